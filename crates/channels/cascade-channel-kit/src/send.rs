//! Sends in several parts (a file, then a text too long for its caption).
//!
//! Once a part is accepted the contact has it, so a later part's failure must not become the
//! send's error: a `transient` error would make the engine send the whole message again (the
//! accepted part twice), and an `unreachable` or `rejected` one would move the cascade on
//! although the contact already got something. The send is accepted with what went out, and
//! the failure is logged.

use cascade_engine::{Accepted, SendError, SendRequest};

/// The result of a send whose later part failed after `sent` was accepted: `sent` (statuses
/// are waited for on it), with a warning that names the connection and `error`.
///
/// ```
/// use cascade_engine::{Accepted, SendError};
/// # fn demo(request: &cascade_engine::SendRequest, file: Accepted, text: Result<Accepted, SendError>) -> Accepted {
/// // The file went out; the text that follows it may not.
/// text.unwrap_or_else(|e| cascade_channel_kit::send::partly_sent(request, file, &e))
/// # }
/// ```
pub fn partly_sent(request: &SendRequest, sent: Accepted, error: &SendError) -> Accepted {
    tracing::warn!(
        connection = %request.connection,
        cascade = %request.cascade_id,
        attempt = request.attempt,
        provider_message_id = %sent.provider_message_id,
        error = %error,
        "a later part of the message failed after the first was accepted; not retried, so nothing goes twice"
    );
    sent
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cascade_engine::{Address, AddressKind, CascadeId, Content};

    use super::*;

    #[test]
    fn the_accepted_part_is_the_result() {
        let request = SendRequest {
            cascade_id: CascadeId::new(),
            attempt: 1,
            connection: "tg-1".into(),
            address: Address { kind: AddressKind::ChannelId, value: "42".into() },
            content: Arc::new(Content::default()),
            conversation_open: false,
        };
        let sent = Accepted::new("42:10");
        let accepted = partly_sent(&request, sent.clone(), &SendError::transient("http_500", "down"));
        assert_eq!(accepted, sent);
    }
}
