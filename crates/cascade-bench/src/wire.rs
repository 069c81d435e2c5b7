//! A lean HTTP/1.1 client for the `http` scenario's load: one keep-alive connection per
//! client, each request written as bytes prepared in full, each answer read with `httparse`.
//!
//! The bench's clients share the machine's two cores with the server they measure, so what the
//! clients spend is taken from the server. A general-purpose client (reqwest: a connection
//! pool, header maps, redirects, body streams) spent about 70,000 instructions on each request;
//! this one writes a buffer and parses a status line and a few headers, as load generators
//! such as `wrk` do.
//!
//! It takes only what the bench's server sends: answers with a `content-length`, on a
//! connection kept open. Anything else (a chunked body, the server closing the connection) is
//! an error, and the scenario counts that client's request as failed and stops the client.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest answer head (status line and headers) taken.
const MAX_HEAD: usize = 16 * 1024;

/// One keep-alive connection to the server.
#[derive(Debug)]
pub(crate) struct Wire {
    stream: TcpStream,
    /// Bytes read and not yet taken as part of an answer.
    buf: Vec<u8>,
}

/// An answer: its status code and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Wire {
    /// Opens a connection to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends `request` (a whole HTTP/1.1 request, see [`post`]) and reads its answer, which
    /// must have a `content-length` (axum's answers with a body in one piece do).
    pub(crate) async fn call(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        let (head, status, length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut answer = httparse::Response::new(&mut headers);
            match answer.parse(&self.buf).map_err(|e| invalid(format!("answer head: {e}")))? {
                httparse::Status::Complete(head) => {
                    let status = answer.code.unwrap_or(0);
                    let length = content_length(answer.headers)?;
                    break (head, status, length);
                }
                httparse::Status::Partial if self.buf.len() >= MAX_HEAD => {
                    return Err(invalid(format!("an answer head longer than {MAX_HEAD} bytes")));
                }
                httparse::Status::Partial => self.fill().await?,
            }
        };
        while self.buf.len() < head + length {
            self.fill().await?;
        }
        let body = self.buf[head..head + length].to_vec();
        self.buf.drain(..head + length);
        Ok(Answer { status, body })
    }

    /// Reads more of the connection into the buffer; the server closing it is an error.
    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        Ok(())
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> io::Result<usize> {
    let header = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| invalid("an answer without content-length"))?;
    std::str::from_utf8(header.value)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| invalid(format!("content-length {:?}", String::from_utf8_lossy(header.value))))
}

/// A `POST` of a JSON `body` to `path` on `addr`, with a bearer token, as bytes ready to send.
pub(crate) fn post(addr: SocketAddr, path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After each request it reads on one connection, writes the bytes given for that request
    /// (in pieces, see [`send`]); then closes the connection.
    async fn server(replies: Vec<Vec<u8>>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            for reply in replies {
                // Wait for a whole request head and its body (these tests send `content-length: 2`).
                loop {
                    let mut chunk = [0u8; 1024];
                    let n = socket.read(&mut chunk).await.expect("read");
                    seen.extend_from_slice(&chunk[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n")
                        && seen.len() >= end + 4 + 2
                    {
                        seen.drain(..end + 4 + 2);
                        break;
                    }
                }
                send(&mut socket, &reply).await;
            }
        });
        addr
    }

    /// Writes `bytes` in two pieces with a pause between them, so that the client reads the
    /// first before the second is there (real time: the pause is for the other side's socket).
    async fn send(socket: &mut TcpStream, bytes: &[u8]) {
        let (first, rest) = bytes.split_at(bytes.len() / 2);
        socket.write_all(first).await.expect("write");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        socket.write_all(rest).await.expect("write");
    }

    #[tokio::test]
    async fn answers_on_one_connection_are_read_in_turn() {
        let addr = server(vec![
            b"HTTP/1.1 202 Accepted\r\ncontent-type: text/plain\r\nContent-Length: 8\r\n\r\naccepted".to_vec(),
            b"HTTP/1.1 422 Unprocessable Entity\r\ncontent-length: 0\r\n\r\n".to_vec(),
        ])
        .await;
        let mut wire = Wire::connect(addr).await.expect("connect");
        let request = post(addr, "/v1/cascades", "key", "{}");
        let first = wire.call(&request).await.expect("first answer");
        assert_eq!((first.status, first.body.as_slice()), (202, &b"accepted"[..]));
        let second = wire.call(&request).await.expect("second answer");
        assert_eq!((second.status, second.body.len()), (422, 0));
        assert!(wire.call(&request).await.is_err(), "the server has closed the connection");
    }

    #[tokio::test]
    async fn bytes_past_an_answer_begin_the_next() {
        let second: &[u8] = b"HTTP/1.1 202 Accepted\r\ncontent-length: 3\r\n\r\ntwo";
        let (early, late) = second.split_at(20);
        let mut first_reply = b"HTTP/1.1 202 Accepted\r\ncontent-length: 3\r\n\r\none".to_vec();
        first_reply.extend_from_slice(early);
        let addr = server(vec![first_reply, late.to_vec()]).await;
        let mut wire = Wire::connect(addr).await.expect("connect");
        let request = post(addr, "/", "key", "{}");
        assert_eq!(wire.call(&request).await.expect("first answer").body, b"one");
        assert_eq!(wire.buf, early, "the bytes past the first answer are kept");
        assert_eq!(wire.call(&request).await.expect("second answer").body, b"two");
        assert!(wire.buf.is_empty());
    }

    #[tokio::test]
    async fn an_answer_without_a_length_is_an_error() {
        let addr = server(vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n".to_vec()]).await;
        let mut wire = Wire::connect(addr).await.expect("connect");
        let err = wire.call(&post(addr, "/", "key", "{}")).await.expect_err("no content-length");
        assert!(err.to_string().contains("content-length"), "{err}");
    }

    #[test]
    fn a_post_names_its_length_and_token() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let text = String::from_utf8(post(addr, "/v1/cascades", "k1", "{\"a\":1}")).expect("text");
        assert!(text.starts_with("POST /v1/cascades HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"), "{text}");
        assert!(text.contains("authorization: Bearer k1\r\n") && text.contains("content-length: 7\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"a\":1}"), "{text}");
    }
}
