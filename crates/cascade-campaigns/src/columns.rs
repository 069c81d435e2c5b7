//! What a CSV column (or a JSON key) holds, from its name.
//!
//! Names are matched case-insensitively, with spaces and dashes read as `_`
//! (`Phone Number`, `phone-number` and `PHONE_NUMBER` are the same):
//!
//! | column | names |
//! | --- | --- |
//! | phone | `phone`, `phone_number`, `phonenumber`, `phone_no`, `mobile`, `mobile_phone`, `mobile_number`, `cell`, `cell_phone`, `cellphone`, `msisdn`, `tel`, `telephone` |
//! | email | `email`, `e_mail` (`e-mail`), `mail`, `email_address` |
//! | name | `name`, `full_name`, `fullname`, `contact_name`, `display_name` |
//! | Telegram address | `telegram`, `telegram_id`, `telegram_chat_id`, `tg` |
//! | WhatsApp address | `whatsapp`, `whatsapp_id`, `wa_id` |
//! | Viber address | `viber`, `viber_id` |
//! | MAX address | `max`, `max_id` |
//! | time zone | `time_zone`, `timezone`, `tz`: the custom field `time_zone`, an IANA zone name (see [`crate::schedule`]) |
//! | any channel's address | `address.<channel>` (e.g. `address.line`) |
//! | a custom field | `fields.<name>` (to use a name listed above as a field), or any other name |
//!
//! A custom field keeps its name as written (trimmed): a column `City` is
//! `{{contact.fields.City}}` in templates.
//!
//! ```
//! use cascade_campaigns::columns::{Column, column_for};
//! assert_eq!(column_for("Mobile Number"), Column::Phone);
//! assert_eq!(column_for("E-Mail"), Column::Email);
//! assert_eq!(column_for("address.Line"), Column::Address("line".into()));
//! assert_eq!(column_for(" City "), Column::Field("City".into()));
//! assert_eq!(column_for("Time Zone"), Column::Field("time_zone".into()));
//! ```

use cascade_engine::ChannelName;

/// What a column holds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Column {
    /// The phone number.
    Phone,
    /// The email address.
    Email,
    /// The contact's name.
    Name,
    /// An address on a channel (a Telegram chat id, a Viber id…).
    Address(ChannelName),
    /// A custom field, under this name.
    Field(String),
    /// A column without a name: its values are not read.
    Ignored,
}

impl Column {
    /// Whether the column gives a way to reach the contact (phone, email or an address).
    pub fn is_address(&self) -> bool {
        matches!(self, Column::Phone | Column::Email | Column::Address(_))
    }

    /// What the column is, for messages: `phone`, `email`, `name`, `address.telegram`,
    /// `fields.City`.
    pub fn label(&self) -> String {
        match self {
            Column::Phone => "phone".into(),
            Column::Email => "email".into(),
            Column::Name => "name".into(),
            Column::Address(c) => format!("address.{c}"),
            Column::Field(f) => format!("fields.{f}"),
            Column::Ignored => "(ignored)".into(),
        }
    }
}

/// The column a header name (or a JSON key) stands for.
pub fn column_for(header: &str) -> Column {
    let trimmed = header.trim();
    if trimmed.is_empty() {
        return Column::Ignored;
    }
    let key: String =
        trimmed.chars().map(|c| if c == ' ' || c == '-' { '_' } else { c.to_ascii_lowercase() }).collect();
    if let Some((prefix, rest)) = trimmed.split_once('.') {
        let prefix = prefix.trim().to_ascii_lowercase();
        let rest = rest.trim();
        if (prefix == "address" || prefix == "addresses") && !rest.is_empty() {
            return Column::Address(ChannelName::new(rest.to_lowercase()));
        }
        if (prefix == "fields" || prefix == "field") && !rest.is_empty() {
            return Column::Field(rest.to_owned());
        }
    }
    match key.as_str() {
        "phone" | "phone_number" | "phonenumber" | "phone_no" | "mobile" | "mobile_phone" | "mobile_number"
        | "cell" | "cell_phone" | "cellphone" | "msisdn" | "tel" | "telephone" => Column::Phone,
        "email" | "e_mail" | "mail" | "email_address" | "e_mail_address" => Column::Email,
        "name" | "full_name" | "fullname" | "contact_name" | "display_name" => Column::Name,
        "telegram" | "telegram_id" | "telegram_chat_id" | "tg" => Column::Address("telegram".into()),
        "whatsapp" | "whatsapp_id" | "wa_id" => Column::Address("whatsapp".into()),
        "viber" | "viber_id" => Column::Address("viber".into()),
        "max" | "max_id" => Column::Address("max".into()),
        "time_zone" | "timezone" | "tz" => Column::Field(crate::schedule::TIME_ZONE_FIELD.into()),
        _ => Column::Field(trimmed.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for phone in ["phone", "Phone Number", "phone-number", "PHONE_NUMBER", "mobile", "Cell Phone", "MSISDN", "tel"]
        {
            assert_eq!(column_for(phone), Column::Phone, "{phone}");
        }
        for email in ["email", "E-mail", "e_mail", "Mail", "Email Address"] {
            assert_eq!(column_for(email), Column::Email, "{email}");
        }
        for name in ["name", "Full Name", "fullname", "Contact Name"] {
            assert_eq!(column_for(name), Column::Name, "{name}");
        }
        assert_eq!(column_for("Telegram Chat ID"), Column::Address("telegram".into()));
        assert_eq!(column_for("wa_id"), Column::Address("whatsapp".into()));
        assert_eq!(column_for("Viber"), Column::Address("viber".into()));
        assert_eq!(column_for("MAX"), Column::Address("max".into()));
        assert_eq!(column_for("addresses.sms"), Column::Address("sms".into()));
        for tz in ["time_zone", "Time Zone", "TIMEZONE", "tz", "time-zone"] {
            assert_eq!(column_for(tz), Column::Field("time_zone".into()), "{tz}");
        }
    }

    #[test]
    fn fields_keep_their_name() {
        assert_eq!(column_for("First Name"), Column::Field("First Name".into()));
        assert_eq!(column_for("fields.mobile"), Column::Field("mobile".into()));
        assert_eq!(column_for("address."), Column::Field("address.".into()));
        assert_eq!(column_for("  "), Column::Ignored);
    }
}
