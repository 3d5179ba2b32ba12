//! `vin-check`: a DIBOP transform that validates a vehicle identification number.
//!
//! Input: a VIN as a string, or an object `{"vin": "..."}`. Output:
//!
//! ```json
//! {"vin": "1HGCM82633A004352", "valid": true, "check_digit": "3",
//!  "expected_check_digit": "3", "errors": []}
//! ```
//!
//! The VIN is trimmed and upper-cased. It is valid when it has 17 characters, all ASCII
//! letters or digits except `I`, `O` and `Q`, and its 9th character is the check digit of
//! ISO 3779 as used in North America (49 CFR 565): letters are transliterated to numbers,
//! each position is weighted, and the weighted sum modulo 11 is the check digit (10 is
//! written `X`). An invalid VIN is a normal answer with `valid: false` and the reasons in
//! `errors`; only input that carries no string VIN at all is an error (`invalid_input`).
//!
//! Note that manufacturers outside North America are not obliged to use the check digit, so
//! `valid: false` with only a check digit error may still be a genuine European VIN.

use dibop_sdk::{PluginError, Transform, TransformInfo, Value, json};

/// Weight of each of the 17 positions; position 9 (the check digit itself) weighs 0.
const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];

/// The number a VIN character stands for in the check digit sum, or `None` for characters
/// a VIN may not contain (including `I`, `O` and `Q`).
pub fn transliterate(c: char) -> Option<u32> {
    let value = match c {
        '0'..='9' => c.to_digit(10)?,
        'A' | 'J' => 1,
        'B' | 'K' | 'S' => 2,
        'C' | 'L' | 'T' => 3,
        'D' | 'M' | 'U' => 4,
        'E' | 'N' | 'V' => 5,
        'F' | 'W' => 6,
        'G' | 'P' | 'X' => 7,
        'H' | 'Y' => 8,
        'R' | 'Z' => 9,
        _ => return None,
    };
    Some(value)
}

/// The check digit a 17-character VIN should carry at position 9, or `None` when the VIN
/// does not have 17 valid characters.
pub fn expected_check_digit(vin: &str) -> Option<char> {
    let chars: Vec<char> = vin.chars().collect();
    if chars.len() != 17 {
        return None;
    }
    let mut sum = 0;
    for (c, weight) in chars.iter().zip(WEIGHTS) {
        sum += transliterate(*c)? * weight;
    }
    match sum % 11 {
        10 => Some('X'),
        digit => char::from_digit(digit, 10),
    }
}

/// The result of checking one VIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The VIN, trimmed and upper-cased.
    pub vin: String,
    /// Whether it has no errors.
    pub valid: bool,
    /// Its 9th character as given, if it has one.
    pub check_digit: Option<char>,
    /// The check digit it should have, when it has 17 valid characters.
    pub expected_check_digit: Option<char>,
    /// Why it is invalid; empty when valid.
    pub errors: Vec<String>,
}

impl Report {
    /// The report as the transform's JSON output.
    pub fn to_json(&self) -> Value {
        json!({
            "vin": self.vin,
            "valid": self.valid,
            "check_digit": self.check_digit.map(String::from),
            "expected_check_digit": self.expected_check_digit.map(String::from),
            "errors": self.errors,
        })
    }
}

/// Checks a VIN: length, allowed characters and check digit.
pub fn check(vin: &str) -> Report {
    let vin = vin.trim().to_uppercase();
    let chars: Vec<char> = vin.chars().collect();
    let mut errors = Vec::new();

    if chars.len() != 17 {
        errors.push(format!("a VIN has 17 characters, this one has {}", chars.len()));
    }
    for (i, c) in chars.iter().enumerate() {
        if transliterate(*c).is_none() {
            let why = if matches!(c, 'I' | 'O' | 'Q') {
                "I, O and Q are not used in VINs"
            } else {
                "only letters and digits are allowed"
            };
            errors.push(format!("invalid character {c:?} at position {}: {why}", i + 1));
        }
    }

    let check_digit = chars.get(8).copied();
    let expected = expected_check_digit(&vin);
    if let (Some(given), Some(expected)) = (check_digit, expected)
        && given != expected
    {
        errors.push(format!("check digit (position 9) is {given:?} but should be {expected:?}"));
    }

    Report { valid: errors.is_empty(), vin, check_digit, expected_check_digit: expected, errors }
}

/// The transform exported by this crate.
struct VinCheck;

impl Transform for VinCheck {
    fn describe() -> TransformInfo {
        TransformInfo {
            slug: "vin-check".into(),
            name: "VIN check".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Validates a VIN: 17 characters without I, O or Q, and the North American check digit \
                          (ISO 3779, position 9). Input is the VIN as a string or {\"vin\": \"...\"}."
                .into(),
            params_schema: json!({"type": "object"}),
        }
    }

    fn run(input: Value, _params: Value) -> Result<Value, PluginError> {
        let vin = match &input {
            Value::String(vin) => vin,
            Value::Object(fields) => match fields.get("vin") {
                Some(Value::String(vin)) => vin,
                Some(_) => return Err(PluginError::invalid_input("`vin` must be a string")),
                None => return Err(PluginError::invalid_input("the input object has no `vin` field")),
            },
            _ => return Err(PluginError::invalid_input("the input must be a VIN string or an object with `vin`")),
        };
        Ok(check(vin).to_json())
    }
}

dibop_sdk::export_transform!(VinCheck);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_valid_vins() {
        for vin in ["1HGCM82633A004352", "11111111111111111", "1M8GDM9AXKP042788"] {
            let report = check(vin);
            assert!(report.valid, "{vin}: {:?}", report.errors);
            assert_eq!(report.check_digit, report.expected_check_digit);
        }
        assert_eq!(expected_check_digit("1M8GDM9AXKP042788"), Some('X'));
    }

    #[test]
    fn normalizes() {
        let report = check("  1hgcm82633a004352 ");
        assert_eq!(report.vin, "1HGCM82633A004352");
        assert!(report.valid);
    }

    #[test]
    fn wrong_check_digit() {
        let report = check("1HGCM82623A004352");
        assert!(!report.valid);
        assert_eq!(report.check_digit, Some('2'));
        assert_eq!(report.expected_check_digit, Some('3'));
        assert_eq!(report.errors.len(), 1);
    }

    #[test]
    fn bad_length_and_characters() {
        let report = check("1HGCM8263");
        assert!(!report.valid);
        assert_eq!(report.expected_check_digit, None);
        assert_eq!(report.check_digit, Some('3'));

        let report = check("1HGCM82633A00435O");
        assert!(!report.valid);
        assert!(report.errors[0].contains("position 17"), "{:?}", report.errors);
        assert_eq!(report.expected_check_digit, None);

        let report = check("");
        assert!(!report.valid);
        assert_eq!(report.to_json()["check_digit"], Value::Null);
    }

    #[test]
    fn run_accepts_string_or_object() {
        let out = VinCheck::run(json!("1HGCM82633A004352"), Value::Null).unwrap();
        assert_eq!(out["valid"], json!(true));
        assert_eq!(out["check_digit"], json!("3"));
        assert_eq!(out["errors"], json!([]));
        let out = VinCheck::run(json!({"vin": "11111111111111111"}), json!({})).unwrap();
        assert_eq!(out["expected_check_digit"], json!("1"));
        assert_eq!(VinCheck::run(json!(42), Value::Null).unwrap_err().code, "invalid_input");
        assert_eq!(VinCheck::run(json!({"vin": 1}), Value::Null).unwrap_err().code, "invalid_input");
    }
}
