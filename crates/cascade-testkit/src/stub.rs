use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cascade_engine::{Accepted, Capabilities, Channel, ChannelInfo, ChannelName, Content, SendError, SendRequest};

/// One send a [`StubChannel`] received.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    /// The request as the engine made it.
    pub request: SendRequest,
    /// What the stub answered.
    pub result: Result<Accepted, SendError>,
}

impl SentMessage {
    /// The rendered content.
    pub fn content(&self) -> &Content {
        &self.request.content
    }
}

/// A channel that answers from a script and records what it was asked to send.
///
/// By default every send is accepted with a fresh provider id (`<adapter>-<n>`). Per address,
/// [`script`](StubChannel::script) queues answers used in order (then the default again);
/// [`set_default`](StubChannel::set_default) changes the default. Clones share the script and
/// the record, so a test keeps one clone to inspect after giving the other to the engine.
#[derive(Clone, Debug)]
pub struct StubChannel {
    info: Arc<ChannelInfo>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<String, VecDeque<Result<Accepted, SendError>>>,
    default: Option<Result<Accepted, SendError>>,
    sends: Vec<SentMessage>,
    counter: u64,
}

impl StubChannel {
    /// A stub for `channel` whose adapter is named `stub-<channel>`.
    pub fn new(channel: &str, capabilities: Capabilities) -> Self {
        Self::with_adapter(channel, &format!("stub-{channel}"), capabilities)
    }

    /// A stub with a chosen adapter name.
    pub fn with_adapter(channel: &str, adapter: &str, capabilities: Capabilities) -> Self {
        Self {
            info: Arc::new(ChannelInfo {
                channel: ChannelName::new(channel),
                adapter: ChannelName::new(adapter),
                capabilities,
            }),
            state: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues answers for sends to `address`.
    pub fn script(&self, address: &str, answers: impl IntoIterator<Item = Result<Accepted, SendError>>) {
        self.lock().scripts.entry(address.to_owned()).or_default().extend(answers);
    }

    /// The answer when no script applies (`None`: accept with a fresh id).
    pub fn set_default(&self, answer: Option<Result<Accepted, SendError>>) {
        self.lock().default = answer;
    }

    /// Every send so far.
    pub fn sends(&self) -> Vec<SentMessage> {
        self.lock().sends.clone()
    }

    /// The provider ids of every accepted send.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.lock().sends.iter().filter_map(|s| s.result.as_ref().ok().map(|a| a.provider_message_id.clone())).collect()
    }
}

#[async_trait]
impl Channel for StubChannel {
    fn info(&self) -> &ChannelInfo {
        &self.info
    }

    async fn send(&self, request: &SendRequest) -> Result<Accepted, SendError> {
        let mut g = self.lock();
        g.counter += 1;
        let fresh = Accepted::new(format!("{}-{}", self.info.adapter, g.counter));
        let scripted = g.scripts.get_mut(&request.address.value).and_then(VecDeque::pop_front);
        let result = match scripted.or_else(|| g.default.clone()) {
            Some(Ok(mut a)) => {
                if a.provider_message_id.is_empty() {
                    a.provider_message_id = fresh.provider_message_id;
                }
                Ok(a)
            }
            Some(Err(e)) => Err(e),
            None => Ok(fresh),
        };
        g.sends.push(SentMessage { request: request.clone(), result: result.clone() });
        result
    }
}
