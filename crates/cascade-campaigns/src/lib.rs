//! # cascade-campaigns
//!
//! Campaigns send one message template to a list of recipients — thousands or millions —
//! each recipient through a cascade of its own. This crate starts with the part every campaign
//! begins with: **importing and validating the recipient list**.
//!
//! - [`recipients`]: reads a CSV file (header row, `,` `;` or tab separators, quoted fields,
//!   BOM, CRLF) or a JSON array of objects, streamed, as [`cascade_engine::Contact`]s with
//!   their line numbers. Column names and their aliases are in [`columns`].
//! - [`phone`]: phone numbers to E.164 with libphonenumber's metadata and a default region,
//!   with reasons for people when a number is not one; [`email`]: a structural email check.
//! - [`validate`](mod@validate): valid, invalid and duplicate rows, a [`Report`] with the
//!   errors by line, a preview of the message template for the first recipients (rendered by
//!   [`cascade_engine::template`]) and the template variables some rows lack.
//!
//! The campaign runner (schedule, sending window, rate, progress, the store and the API)
//! comes later; `docs/campaigns.md` describes the list format.
//!
//! ```
//! use cascade_campaigns::validate::{validate, ValidateOptions};
//!
//! let csv = "Phone;Name;City\n+44 7400 123456;Ann;Leeds\n07400 123457;Bob;\nnot a number;Cy;York\n";
//! let options = ValidateOptions { region: Some("GB".parse()?), ..ValidateOptions::default() };
//! let report = validate(csv.as_bytes(), &options)?;
//! assert_eq!((report.valid, report.invalid, report.duplicate), (2, 1, 0));
//! assert_eq!(report.errors[0].line, 4);
//! assert_eq!(report.errors[0].reason, "phone \"not a number\": not a phone number");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod columns;
pub mod email;
pub mod phone;
pub mod recipients;
pub mod validate;

pub use phone::Region;
pub use recipients::{Format, ImportError, Row};
pub use validate::{Recipient, Report, ValidateError, ValidateOptions, Validator, validate, validate_with};
