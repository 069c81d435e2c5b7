use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ChannelName;

/// Who a cascade writes to.
///
/// A contact has a phone number (E.164, e.g. `+15551234567`), an email address, and any number
/// of per-channel addresses (a Telegram chat id, a WhatsApp id, a Viber id, a MAX id …) keyed by
/// channel name. Custom `fields` are free-form values usable in templates as
/// `{{contact.fields.NAME}}`.
///
/// ```
/// use cascade_engine::Contact;
/// let c: Contact = serde_json::from_str(r#"{
///     "name": "Ann", "phone": "+15551234567",
///     "addresses": {"telegram": "123456789"}, "fields": {"city": "Austin"}
/// }"#).unwrap();
/// assert_eq!(c.addresses["telegram"], "123456789");
/// ```
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The contact's name, as templates see it in `{{contact.name}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone number in E.164 form (`+` and 8 to 15 digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Per-channel addresses: channel name → that channel's id for this contact.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<ChannelName, String>,
    /// Custom fields for templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl Contact {
    /// A contact with just a phone number.
    pub fn with_phone(phone: impl Into<String>) -> Self {
        Self { phone: Some(phone.into()), ..Self::default() }
    }

    /// Sets the name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the email address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// Adds a per-channel address.
    pub fn address(mut self, channel: impl Into<ChannelName>, value: impl Into<String>) -> Self {
        self.addresses.insert(channel.into(), value.into());
        self
    }

    /// Adds a custom field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// The address to use on `channel`, trying the kinds the channel accepts in its order of
    /// preference. `None` when the contact has none of them.
    pub fn address_for(&self, channel: &ChannelName, kinds: &[AddressKind]) -> Option<Address> {
        kinds.iter().find_map(|kind| {
            let value = match kind {
                AddressKind::ChannelId => self.addresses.get(channel),
                AddressKind::Phone => self.phone.as_ref(),
                AddressKind::Email => self.email.as_ref(),
            }?;
            (!value.trim().is_empty()).then(|| Address { kind: *kind, value: value.clone() })
        })
    }
}

/// Which of a contact's addresses a channel can send to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    /// The contact's per-channel address (`contact.addresses[channel]`).
    ChannelId,
    /// The contact's E.164 phone number.
    Phone,
    /// The contact's email address.
    Email,
}

/// A resolved address: what kind it is and its value.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Address {
    /// Where the value came from.
    pub kind: AddressKind,
    /// The phone number, email address or channel id.
    pub value: String,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Whether `phone` is in E.164 form: `+`, a non-zero digit, then 7 to 14 more digits.
///
/// ```
/// assert!(cascade_engine::is_e164("+15551234567"));
/// assert!(!cascade_engine::is_e164("5551234567"));
/// assert!(!cascade_engine::is_e164("+0123456789"));
/// ```
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}
