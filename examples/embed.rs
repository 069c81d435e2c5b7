//! Embedding cascade: two home-made channels, one policy, three contacts.
//!
//! `cargo run -p cascade-examples --example embed`
//!
//! Cascades are kept in a SQLite file (the embedded default; `cascade-example.db` in the
//! current directory, started afresh each run): kill the program half-way and the cascades are
//! still there for the next engine on that file.
//!
//! "Chat" is a messenger only some contacts use; "Pager" reaches everyone by phone but costs
//! money. The policy tries Chat first and falls over to Pager when the contact is not on Chat
//! or Chat stays silent past the step's timeout. Both channels are plain structs implementing
//! `cascade_engine::Channel`; their "providers" report statuses back to the engine the way a
//! webhook handler would.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cascade_engine::*;
use tokio::sync::mpsc;

/// A status a fake provider reports later, as a webhook would.
type Report = (String, StatusUpdate);

/// A chat messenger: knows some users; delivers to the ones who are online.
#[derive(Debug)]
struct Chat {
    info: ChannelInfo,
    users: HashSet<&'static str>,
    online: HashSet<&'static str>,
    reports: mpsc::UnboundedSender<Report>,
    next: AtomicU64,
}

#[async_trait]
impl Channel for Chat {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, req: &SendRequest) -> Result<Accepted, SendError> {
        let user = req.address.value.as_str();
        if !self.users.contains(user) {
            // The contact is not on this messenger: the engine moves to the next step at once.
            return Err(SendError::unreachable("no_such_user", format!("{user} is not on Chat")));
        }
        let id = format!("chat-{}", self.next.fetch_add(1, Ordering::Relaxed));
        if self.online.contains(user) {
            let update =
                StatusUpdate { provider_message_id: id.clone(), status: Status::Delivered, at: None, error: None };
            let _ = self.reports.send(("chat".into(), update));
        }
        Ok(Accepted::new(id))
    }
}

/// A pager service: reaches any phone, reports delivery, costs money.
#[derive(Debug)]
struct Pager {
    info: ChannelInfo,
    reports: mpsc::UnboundedSender<Report>,
    next: AtomicU64,
}

#[async_trait]
impl Channel for Pager {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, req: &SendRequest) -> Result<Accepted, SendError> {
        if !req.address.value.starts_with('+') {
            return Err(SendError::unreachable("bad_number", "not a phone number"));
        }
        let id = format!("page-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let update = StatusUpdate { provider_message_id: id.clone(), status: Status::Delivered, at: None, error: None };
        let _ = self.reports.send(("pager".into(), update));
        Ok(Accepted::new(id))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let chat = Chat {
        info: ChannelInfo {
            channel: "chat".into(),
            adapter: "chat".into(),
            capabilities: Capabilities {
                inbound: true,
                ..Capabilities::text_only([AddressKind::ChannelId], Status::Delivered)
            },
        },
        users: ["ann", "bob"].into(),
        online: ["ann"].into(),
        reports: tx.clone(),
        next: AtomicU64::new(1),
    };
    let pager = Pager {
        info: ChannelInfo {
            channel: "pager".into(),
            adapter: "pager".into(),
            capabilities: Capabilities::text_only([AddressKind::Phone], Status::Delivered),
        },
        reports: tx,
        next: AtomicU64::new(1),
    };

    let path = std::path::Path::new("cascade-example.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let store = cascade_store_sql::SqliteStore::open(path).await?;
    let engine = Engine::builder()
        .store(std::sync::Arc::new(store))
        .connection(Connection::new("chat-main", chat))
        .connection(Connection::new("pager-main", pager).price("0.05".parse()?))
        .build()?;

    // The "webhook handler": feeds provider statuses to the engine.
    let intake = engine.clone();
    tokio::spawn(async move {
        while let Some((adapter, update)) = reports.recv().await {
            let _ = intake.status(&adapter, update).await;
        }
    });

    // Chat first, waiting 2 s for "delivered"; then the pager.
    let policy = std::sync::Arc::new(Policy::new([
        Step::new("chat").until(Status::Delivered).timeout(Duration::from_secs(2)),
        Step::new("pager"),
    ]));
    let contacts = [
        Contact::with_phone("+15550000001").name("Ann").address("chat", "ann"), // online on Chat
        Contact::with_phone("+15550000002").name("Bob").address("chat", "bob"), // on Chat, silent
        Contact::with_phone("+15550000003").name("Cy"),                         // not on Chat
    ];

    let mut handles = Vec::new();
    for contact in contacts {
        let name = contact.name.clone().unwrap_or_default();
        let request =
            CascadeRequest::new(contact, Message::text("Hi {{contact.name}}, your table is ready"), policy.clone());
        handles.push((name, engine.submit(request).await?));
    }

    println!("{:<6} {:<10} {:<8} {:>6}  path", "who", "outcome", "channel", "cost");
    for (name, handle) in handles {
        let outcome = handle.outcome().await?;
        let view = engine.get(handle.id()).await?.ok_or("cascade vanished")?;
        let path: Vec<String> = view
            .record
            .state
            .attempts
            .iter()
            .map(|a| format!("{}:{}", a.channel, a.highest.map_or_else(|| a.state_label(), |s| s.to_string())))
            .collect();
        let channel = match &outcome {
            Outcome::Delivered { channel, .. } => channel.to_string(),
            _ => "-".into(),
        };
        println!(
            "{:<6} {:<10} {:<8} {:>6}  {}",
            name,
            outcome.state(),
            channel,
            view.record.state.cost(),
            path.join(" → ")
        );
    }
    engine.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

trait Label {
    fn state_label(&self) -> String;
}

impl Label for Attempt {
    fn state_label(&self) -> String {
        self.error.as_ref().map_or_else(|| format!("{:?}", self.state).to_lowercase(), |e| e.class.to_string())
    }
}
