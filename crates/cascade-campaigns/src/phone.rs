//! Phone numbers: normalization to E.164 with libphonenumber's metadata (the `phonenumber`
//! crate), and reasons for people when a number is not one.
//!
//! A number written with `+` or `00` in front carries its country code and is read as such,
//! whatever the default region. Any other number is read as a national number of the default
//! [`Region`] (national prefix and all: `(201) 555-0123` in the US, `030 1234567` in Germany).
//! The result must be a number libphonenumber considers valid (right length and digits for
//! its country), not merely possible.
//!
//! ```
//! use cascade_campaigns::phone::{normalize, Region};
//! let us: Region = "US".parse().unwrap();
//! assert_eq!(normalize("(201) 555-0123", Some(us)).unwrap(), "+12015550123");
//! assert_eq!(normalize("0044 20 7946 0958", Some(us)).unwrap(), "+442079460958");
//! assert_eq!(normalize("12", Some(us)).unwrap_err().to_string(), "too short");
//! assert_eq!(normalize("+999 123", None).unwrap_err().to_string(), "unknown country code");
//! ```

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{ParseError, PhoneNumber};

/// A default region for numbers written without a country code: an ISO 3166 two-letter
/// country code such as `US`, `GB` or `DE` (any case).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region(Id);

impl Region {
    /// The ISO code, upper case (`US`).
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }

    /// The country calling code of the region (`1` for `US`, `44` for `GB`).
    pub fn calling_code(&self) -> u16 {
        DATABASE.by_id(self.code()).map_or(0, |m| m.country_code())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A region code that names no region libphonenumber knows.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("unknown region {0:?}: give a two-letter ISO country code such as US, GB or DE")]
pub struct UnknownRegion(pub String);

impl FromStr for Region {
    type Err = UnknownRegion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let known =
            upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_alphabetic()) && DATABASE.by_id(&upper).is_some();
        match upper.parse::<Id>() {
            Ok(id) if known => Ok(Region(id)),
            _ => Err(UnknownRegion(s.to_owned())),
        }
    }
}

/// Why a phone number was refused. Its `Display` is the reason for people (`too short`,
/// `unknown country code`, `not a valid number for US`), without the number itself.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    /// Letters and no digits at all (`abc`, `n/a`).
    #[error("not a phone number")]
    NotANumber,
    /// Only punctuation or spaces (`---`, `()`, `+`).
    #[error("no digits")]
    NoDigits,
    /// Digits mixed with letters (`555-CALL-NOW`, `201 555 0123 ext 4`): vanity numbers and
    /// extensions cannot receive messages.
    #[error("contains letters")]
    Letters,
    /// A `+` that is not the first character, or more than one.
    #[error("\"+\" is only allowed at the start")]
    MisplacedPlus,
    /// A character that has no place in a phone number (`#`, `*`, `,`, `@`…).
    #[error("unexpected character {0:?}")]
    UnexpectedCharacter(char),
    /// No `+`/`00` country code and no default region to read the number in.
    #[error("no country code: write it as +<country code> <number>, or give a default region")]
    NoCountryCode,
    /// `+` or `00` followed by digits that start with no country's calling code.
    #[error("unknown country code")]
    UnknownCountryCode,
    /// Fewer digits than any number of its country could have.
    #[error("too short")]
    TooShort,
    /// More digits than any number of its country could have.
    #[error("too long")]
    TooLong,
    /// The country is known, but the number is not one of its valid numbers (a length none of
    /// its kinds of numbers has, or leading digits no operator uses).
    #[error("not a valid number for {region}")]
    InvalidForRegion {
        /// The country the number was read in (`US`, `GB`), or `+<code>` for non-geographic
        /// codes.
        region: String,
    },
    /// A valid number of a country with very short numbers (Niue, St Helena), shorter than the
    /// 8 digits (country code included) cascade's channels take.
    #[error("only {digits} digits with the country code: cascade sends to 8 to 15")]
    ShortInternational {
        /// Digits with the country code.
        digits: usize,
    },
}

/// Normalizes `raw` to E.164 (`+` and the digits, e.g. `+12015550123`).
///
/// `region` is the country of numbers written without `+` or `00`; without it such numbers
/// are refused ([`PhoneError::NoCountryCode`]). An empty string is [`PhoneError::NoDigits`]:
/// callers treat an empty column as "no phone" before calling this.
pub fn normalize(raw: &str, region: Option<Region>) -> Result<String, PhoneError> {
    let cleaned = clean(raw)?;
    let (international, digits) = match cleaned.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => match cleaned.strip_prefix("00") {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        },
    };
    let region = if international { None } else { Some(region.ok_or(PhoneError::NoCountryCode)?) };
    if digits.len() < 3 {
        return Err(PhoneError::TooShort);
    }
    if digits.len() > 17 {
        return Err(PhoneError::TooLong);
    }
    let number = if international {
        let mut text = String::with_capacity(digits.len() + 1);
        text.push('+');
        text.push_str(digits);
        phonenumber::parse(None, &text)
    } else {
        phonenumber::parse(region.map(|r| r.0), digits)
    };
    let number = number.map_err(|e| match e {
        ParseError::InvalidCountryCode if international => PhoneError::UnknownCountryCode,
        ParseError::TooLong | ParseError::MalformedInteger(_) => PhoneError::TooLong,
        _ => PhoneError::TooShort,
    })?;
    check(&number, region)?;
    let e164 = format!("+{}{}", number.code().value(), number.national());
    if !cascade_engine::is_e164(&e164) {
        // libphonenumber knows a few countries with very short numbers (4 digits after the
        // country code); the engine takes 8 to 15 digits.
        let digits = e164.len() - 1;
        return Err(if digits < 8 { PhoneError::ShortInternational { digits } } else { PhoneError::TooLong });
    }
    Ok(e164)
}

/// Keeps digits and a leading `+`; refuses letters, misplaced `+` and foreign characters with
/// their own reasons.
fn clean(raw: &str) -> Result<String, PhoneError> {
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace());
    let mut out = String::with_capacity(trimmed.len());
    let (mut letters, mut unexpected) = (false, None);
    for (i, c) in trimmed.char_indices() {
        match c {
            '0'..='9' => out.push(c),
            '+' if i == 0 => out.push('+'),
            '+' => return Err(PhoneError::MisplacedPlus),
            c if c.is_alphabetic() => letters = true,
            c if is_separator(c) => {}
            c => {
                unexpected.get_or_insert(c);
            }
        }
    }
    let has_digits = out.bytes().any(|b| b.is_ascii_digit());
    match (has_digits, letters, unexpected) {
        (false, true, _) => Err(PhoneError::NotANumber),
        (true, true, _) => Err(PhoneError::Letters),
        (_, false, Some(c)) => Err(PhoneError::UnexpectedCharacter(c)),
        (false, false, None) => Err(PhoneError::NoDigits),
        (true, false, None) => Ok(out),
    }
}

/// The country of an E.164 number (`+`, then digits; the separators [`normalize`] ignores
/// are ignored here too), as libphonenumber's metadata tells it: for a calling code several
/// countries share, the one whose leading digits or number patterns the number has (`+1 416…`
/// is `CA`, `+1 212…` is `US`). `None` for text that is not `+` and digits, an unknown calling
/// code, a non-geographic one (`+800`), or a number no country of its calling code claims.
pub(crate) fn region_of_e164(e164: &str) -> Option<Region> {
    let rest = e164.trim().strip_prefix('+')?;
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            c if is_separator(c) => {}
            _ => return None,
        }
    }
    // Calling codes are prefix-free: at most one of the first 1, 2 or 3 digits is one.
    let (code, national) = (1..=3.min(digits.len().saturating_sub(1))).find_map(|len| {
        let code = digits[..len].parse::<u16>().ok()?;
        DATABASE.region(&code).map(|_| (code, &digits[len..]))
    })?;
    let regions = DATABASE.region(&code)?;
    let index = match regions.as_slice() {
        [only] => (*only != "001").then_some(0)?,
        _ => match validity::source(code, national) {
            Some(index) => index?,
            None => {
                let number = phonenumber::parse(None, format!("+{digits}")).ok()?;
                let id = number.country().id()?;
                regions.iter().position(|r| *r == id.as_ref())?
            }
        },
    };
    regions.get(index)?.parse::<Id>().ok().map(Region)
}

/// Characters people write between digits: spaces, dashes, dots, slashes, brackets.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(c, '-' | '.' | '/' | '(' | ')' | '[' | ']' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{30fc}')
}

/// Refuses a parsed number that is not valid, with the most specific reason the metadata
/// gives: shorter or longer than every kind of number of its country, or not valid.
fn check(number: &PhoneNumber, region: Option<Region>) -> Result<(), PhoneError> {
    let code = number.code().value();
    if validity::is_valid(code, &number.national().to_string()).unwrap_or_else(|| number.is_valid()) {
        return Ok(());
    }
    let name = match region {
        Some(r) if r.calling_code() == code => r.code().to_owned(),
        _ => region_name(code),
    };
    let length = number.national().to_string().len() as u16;
    if let Some(metas) = DATABASE.by_code(&code) {
        let lengths = || {
            metas.iter().flat_map(|m| {
                let d = m.descriptors();
                [
                    Some(d.general()),
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ]
                .into_iter()
                .flatten()
                .flat_map(|d| d.possible_length().iter().copied())
            })
        };
        if let (Some(min), Some(max)) = (lengths().min(), lengths().max()) {
            if length < min {
                return Err(PhoneError::TooShort);
            }
            if length > max {
                return Err(PhoneError::TooLong);
            }
        }
    }
    Err(PhoneError::InvalidForRegion { region: name })
}

/// The country of a calling code, for messages: its main region (`US` for `1`), or `+<code>`
/// for codes that are not a country's (`+800`).
fn region_name(code: u16) -> String {
    match DATABASE.region(&code).as_ref().and_then(|r| r.first()) {
        Some(&main) if main != "001" => main.to_owned(),
        _ => format!("+{code}"),
    }
}

/// `PhoneNumber::is_valid`, the same steps over the same metadata, with regular expressions
/// compiled once per thread.
///
/// libphonenumber's metadata keeps its patterns in one shared, locked LRU cache keyed by the
/// pattern text, so every match hashes the pattern (a couple of kilobytes for the US) under a
/// lock; validity checks three times per number that way. Here each country's patterns are
/// compiled on first use into a table of this thread's. `tests::validity_matches_libphonenumber`
/// checks both agree for every country.
mod validity {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use phonenumber::metadata::{DATABASE, Descriptor, Metadata};
    use regex::{Regex, RegexBuilder};

    struct Pattern {
        lengths: Vec<u16>,
        re: Regex,
    }

    impl Pattern {
        fn new(d: &Descriptor) -> Option<Self> {
            Some(Self { lengths: d.possible_length().to_vec(), re: compile(d.national_number().as_str())? })
        }

        /// `Descriptor::is_match`: a possible length, and a match that starts at the start.
        fn is_match(&self, value: &str) -> bool {
            (self.lengths.is_empty() || self.lengths.contains(&(value.len() as u16)))
                && self.re.find(value).is_some_and(|m| m.start() == 0)
        }
    }

    fn compile(source: &str) -> Option<Regex> {
        RegexBuilder::new(source).ignore_whitespace(true).build().ok()
    }

    /// One region's patterns.
    struct Rules {
        leading_digits: Option<Regex>,
        general: Pattern,
        /// Premium rate, toll free, shared cost, VoIP, personal, pager, UAN, voicemail, fixed
        /// line, mobile: `validator::number_type` is not `Unknown` when one of them matches.
        kinds: Vec<Pattern>,
    }

    impl Rules {
        fn new(meta: &Metadata) -> Option<Self> {
            let d = meta.descriptors();
            let kinds = [
                d.premium_rate(),
                d.toll_free(),
                d.shared_cost(),
                d.voip(),
                d.personal_number(),
                d.pager(),
                d.uan(),
                d.voicemail(),
                d.fixed_line(),
                d.mobile(),
            ]
            .into_iter()
            .flatten()
            .map(Pattern::new)
            .collect::<Option<Vec<_>>>()?;
            let leading_digits = match meta.leading_digits() {
                Some(re) => Some(compile(re.as_str())?),
                None => None,
            };
            Some(Self { leading_digits, general: Pattern::new(d.general())?, kinds })
        }

        fn known_type(&self, national: &str) -> bool {
            self.general.is_match(national) && self.kinds.iter().any(|k| k.is_match(national))
        }
    }

    /// The regions of a calling code, in libphonenumber's order (the main one first).
    type Code = Option<Rc<Vec<Rules>>>;

    thread_local! {
        static CODES: RefCell<HashMap<u16, Code>> = RefCell::new(HashMap::new());
    }

    fn rules_for(code: u16) -> Code {
        let metas: Vec<&Metadata> = match DATABASE.region(&code) {
            Some(regions) if regions.len() == 1 && regions[0] == "001" => {
                DATABASE.by_code(&code)?.into_iter().take(1).collect()
            }
            Some(regions) => regions.into_iter().map(|r| DATABASE.by_id(r)).collect::<Option<_>>()?,
            None => return Some(Rc::new(Vec::new())),
        };
        Some(Rc::new(metas.into_iter().map(Rules::new).collect::<Option<Vec<_>>>()?))
    }

    /// The region of `+code national` among the regions of a shared calling code, as
    /// `validator::source_for` picks it: its index in `DATABASE.region(&code)`, `Some(None)`
    /// when no region claims the number, `None` when a pattern does not compile here.
    pub(super) fn source(code: u16, national: &str) -> Option<Option<usize>> {
        let regions = CODES.with(|c| c.borrow_mut().entry(code).or_insert_with(|| rules_for(code)).clone())?;
        Some(regions.iter().position(|rules| match &rules.leading_digits {
            Some(ld) => ld.find(national).is_some_and(|m| m.start() == 0),
            None => rules.known_type(national),
        }))
    }

    /// Whether `+code national` is a valid number, as `validator::is_valid` decides it; `None`
    /// when a pattern does not compile here (the caller then asks libphonenumber).
    pub(super) fn is_valid(code: u16, national: &str) -> Option<bool> {
        let regions = CODES.with(|c| c.borrow_mut().entry(code).or_insert_with(|| rules_for(code)).clone())?;
        if regions.len() == 1 {
            return Some(regions[0].known_type(national));
        }
        // `validator::source_for`: the first region whose leading digits match, or (for one
        // without leading digits) whose patterns know the number.
        for rules in regions.iter() {
            match &rules.leading_digits {
                Some(ld) => {
                    if ld.find(national).is_some_and(|m| m.start() == 0) {
                        return Some(rules.known_type(national));
                    }
                }
                None => {
                    if rules.known_type(national) {
                        return Some(true);
                    }
                }
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Option<Region> {
        Some("us".parse().unwrap())
    }

    #[test]
    fn regions_parse_case_insensitively() {
        assert_eq!("gb".parse::<Region>().unwrap().code(), "GB");
        assert_eq!("DE".parse::<Region>().unwrap().calling_code(), 49);
        assert!("XX".parse::<Region>().is_err());
        assert!("USA".parse::<Region>().is_err());
        assert!("001".parse::<Region>().is_err());
    }

    #[test]
    fn national_numbers_take_the_region() {
        assert_eq!(normalize("201-555-0123", us()).unwrap(), "+12015550123");
        assert_eq!(normalize("1 (201) 555.0123", us()).unwrap(), "+12015550123");
        assert_eq!(normalize("030 1234567", Some("DE".parse().unwrap())).unwrap(), "+49301234567");
        assert_eq!(normalize("07400 123456", Some("GB".parse().unwrap())).unwrap(), "+447400123456");
    }

    #[test]
    fn validity_matches_libphonenumber() {
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = [d.general(), d.fixed_line().unwrap_or(d.general()), d.mobile().unwrap_or(d.general())]
                .into_iter()
                .chain(d.toll_free())
                .chain(d.voip())
                .filter_map(|d| d.example());
            for example in examples {
                let mut variants =
                    vec![example.to_owned(), format!("{example}0"), example[..example.len() - 1].to_owned()];
                for digit in '0'..='9' {
                    variants.push(format!("{digit}{}", &example[1..]));
                    variants.push(format!("{}{digit}", &example[..example.len() - 1]));
                }
                for v in variants {
                    let Ok(number) = phonenumber::parse(None, format!("+{}{v}", meta.country_code())) else { continue };
                    let national = number.national().to_string();
                    assert_eq!(
                        validity::is_valid(number.code().value(), &national),
                        Some(number.is_valid()),
                        "+{} {national} ({})",
                        number.code().value(),
                        meta.id()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 5000, "{checked}");
    }

    #[test]
    fn regions_of_numbers_match_libphonenumber() {
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples =
                [d.fixed_line(), d.mobile(), d.toll_free()].into_iter().flatten().filter_map(|d| d.example());
            for example in examples {
                let text = format!("+{}{example}", meta.country_code());
                let Ok(number) = phonenumber::parse(None, &text) else { continue };
                if number.national().value().to_string() != example {
                    // libphonenumber looks up the country with other digits than written: a
                    // national prefix taken off (`+7 800…` read as `+7 00…`) or a leading zero
                    // dropped (`+39 06…`, Italy and the Vatican).
                    continue;
                }
                let expected = number.country().id().map(|id| id.as_ref().to_owned()).filter(|id| id != "001");
                assert_eq!(region_of_e164(&text).map(|r| r.code().to_owned()), expected, "{text} ({})", meta.id());
                checked += 1;
            }
        }
        assert!(checked > 400, "{checked}");
        assert_eq!(region_of_e164("+1 (416) 555-0123").map(|r| r.code().to_owned()).as_deref(), Some("CA"));
        assert_eq!(region_of_e164("+800 1234 5678"), None, "non-geographic");
        assert_eq!(region_of_e164("4165550123"), None, "no +");
        assert_eq!(region_of_e164("+1 416 CALL"), None);
    }

    #[test]
    fn plus_and_double_zero_ignore_the_region() {
        let de = Some("DE".parse().unwrap());
        assert_eq!(normalize("+1 201 555 0123", de).unwrap(), "+12015550123");
        assert_eq!(normalize("001 201 555 0123", de).unwrap(), "+12015550123");
        assert_eq!(normalize("+44 7400 123456", None).unwrap(), "+447400123456");
    }
}
