//! # cascade-campaigns
//!
//! Campaigns send one message template to a list of recipients — thousands or millions —
//! each recipient through a cascade of its own. This crate imports and checks the list,
//! stores it, and drives the campaign: schedule, sending window, rate, pause and cancel,
//! progress and exports.
//!
//! - [`recipients`]: reads a CSV file (header row, `,` `;` or tab separators, quoted fields,
//!   BOM, CRLF) or a JSON array of objects, streamed, as [`cascade_engine::Contact`]s with
//!   their line numbers. Column names and their aliases are in [`columns`].
//! - [`phone`]: phone numbers to E.164 with libphonenumber's metadata and a default region,
//!   with reasons for people when a number is not one; [`email`]: a structural email check.
//! - [`validate`](mod@validate): valid, invalid and duplicate rows, a [`Report`] with the
//!   errors by line, a preview of the message template for the first recipients (rendered by
//!   [`cascade_engine::template`]) and the template variables some rows lack.
//! - [`schedule`]: sending windows (`mon-fri 09:00-21:00`) judged on a time zone's clock —
//!   whether one is open, when it next opens and closes, across midnight and DST changes —
//!   and each recipient's time zone: their own, or inferred from their phone number's country.
//!
//! - [`run`]: [`Campaigns`], the runner. It creates a campaign from a [`CampaignSpec`] and a
//!   list (streamed into the engine's store), then starts each recipient's cascade at the
//!   campaign's [`Rate`], from `start_at`, inside the window, until `end_at` (the rest end
//!   `expired`); pause, resume and cancel; safe across restarts and instances (idempotency
//!   keys and leases). Campaign cascades are bulk traffic: single cascades go first.
//! - [`progress`]: a campaign's [`Progress`] (started, running, delivered by channel,
//!   failed, expired, remaining, ETA, cost against all-last-channel); [`export`]: failed or
//!   expired recipients as CSV rows with the reason.
//!
//! `docs/campaigns.md` describes the list format, the schedule and the runner.
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
pub mod export;
pub mod phone;
pub mod progress;
pub mod recipients;
pub mod run;
pub mod schedule;
pub mod spec;
pub mod validate;

pub use phone::Region;
pub use progress::Progress;
pub use recipients::{Format, ImportError, Row};
pub use run::{CampaignError, Campaigns, CampaignsConfig, NewCampaign};
pub use schedule::{Window, WindowError};
pub use spec::{CampaignSpec, Rate, Schedule};
pub use validate::{Recipient, Report, ValidateError, ValidateOptions, Validator, validate, validate_with};
