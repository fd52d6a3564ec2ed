//! Events as JSON lines, the format Beam's Python Nexmark launcher reads.
//!
//! One event per line: a person, an auction or a bid object with Beam's field names,
//! told apart by their fields (`name` for a person, `itemName` for an auction, `auction`
//! for a bid). Times are milliseconds since the epoch; `{"millis": n}` is accepted too,
//! as Java's serializer may write it.
//!
//! ```
//! use sluice_nexmark::json::{event_from_json, event_to_json};
//! use sluice_nexmark::generator::NexmarkConfig;
//!
//! let (event, _) = NexmarkConfig::default().event_at(4);
//! let line = event_to_json(&event);
//! assert!(line.starts_with(r#"{"auction":1000,"bidder":1001,"price":32530001,"dateTime":1436918400040"#));
//! assert_eq!(event_from_json(&line).unwrap(), event);
//! ```

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use sluice::prelude::*;

use crate::generator::{Generator, NexmarkConfig};
use crate::model::{Auction, Bid, Event, Person};

/// Reads events from JSON-lines files matching `pattern`, stamped with their event
/// times. A line that is not an event fails the job with the line and what is wrong.
pub fn read_events(p: &Pipeline, name: &str, pattern: &str) -> sluice::Result<PCollection<Event>> {
    let lines = p.read_text(name, pattern);
    Ok(lines.composite("Parse", |lines| {
        lines
            .try_map("FromJson", |line: String| {
                // A line that is not an event stays one whatever the attempt.
                event_from_json(&line).map_err(|e| {
                    sluice::Permanent::new(format!("not a Nexmark event ({e}): {line}"))
                })
            })
            .with_timestamps("EventTime", |e: &Event| e.timestamp())
    }))
}

/// Writes the events of `config`, generator by generator, as JSON lines to `path`
/// (through a temporary file renamed when complete); returns how many were written.
pub fn write_events(config: &NexmarkConfig, path: &Path) -> std::io::Result<u64> {
    let timeline = config.timeline();
    let generator = Generator::new(config, &timeline);
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("events");
    let temp = path.with_file_name(format!(".{file_name}.partial"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
    let mut n = 0;
    let written = (|| -> std::io::Result<()> {
        for range in config.generator_ranges() {
            for count in 0..range.max_events {
                let (event, _) = generator.event(&range, count);
                out.write_all(event_to_json(&event).as_bytes())?;
                out.write_all(b"\n")?;
                n += 1;
            }
        }
        out.flush()
    })();
    drop(out);
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(n),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// The JSON line of an event (without the newline).
pub fn event_to_json(event: &Event) -> String {
    let written = match event {
        Event::Person(p) => serde_json::to_string(p),
        Event::Auction(a) => serde_json::to_string(a),
        Event::Bid(b) => serde_json::to_string(b),
    };
    // Plain structs of strings and integers always serialise.
    written.unwrap_or_default()
}

/// A time: milliseconds, or an object holding them.
struct Millis(i64);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("milliseconds since the epoch, or {\"millis\": n}")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Millis, E> {
                i64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::custom("a time beyond the range of i64 milliseconds"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Millis, A::Error> {
                let mut millis = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "millis" {
                        millis = Some(map.next_value::<i64>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                millis
                    .map(Millis)
                    .ok_or_else(|| serde::de::Error::missing_field("millis"))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Millis {
    fn get(self) -> i64 {
        self.0
    }
}

/// Every field any event has; which are present decides the kind.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyEvent<'a> {
    id: Option<i64>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    email_address: Option<Cow<'a, str>>,
    #[serde(borrow)]
    credit_card: Option<Cow<'a, str>>,
    #[serde(borrow)]
    city: Option<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
    date_time: Option<Millis>,
    #[serde(borrow)]
    extra: Option<Cow<'a, str>>,
    #[serde(borrow)]
    item_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    description: Option<Cow<'a, str>>,
    initial_bid: Option<i64>,
    reserve: Option<i64>,
    expires: Option<Millis>,
    seller: Option<i64>,
    category: Option<i64>,
    auction: Option<i64>,
    bidder: Option<i64>,
    price: Option<i64>,
}

fn need<T>(value: Option<T>, kind: &str, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("a {kind} event needs the field \"{field}\""))
}

/// Parses one JSON line into an event.
pub fn event_from_json(line: &str) -> Result<Event, String> {
    let e = match scan_flat(line) {
        Some(e) => e,
        None => serde_json::from_str(line).map_err(|e| e.to_string())?,
    };
    if e.name.is_some() {
        let k = "person";
        Ok(Event::Person(Box::new(Person {
            id: need(e.id, k, "id")?,
            name: need(e.name, k, "name")?.into_owned(),
            email_address: need(e.email_address, k, "emailAddress")?.into_owned(),
            credit_card: need(e.credit_card, k, "creditCard")?.into_owned(),
            city: need(e.city, k, "city")?.into_owned(),
            state: need(e.state, k, "state")?.into_owned(),
            date_time: need(e.date_time, k, "dateTime")?.get(),
            extra: e.extra.map(Cow::into_owned).unwrap_or_default(),
        })))
    } else if e.item_name.is_some() {
        let k = "auction";
        Ok(Event::Auction(Box::new(Auction {
            id: need(e.id, k, "id")?,
            item_name: need(e.item_name, k, "itemName")?.into_owned(),
            description: need(e.description, k, "description")?.into_owned(),
            initial_bid: need(e.initial_bid, k, "initialBid")?,
            reserve: need(e.reserve, k, "reserve")?,
            date_time: need(e.date_time, k, "dateTime")?.get(),
            expires: need(e.expires, k, "expires")?.get(),
            seller: need(e.seller, k, "seller")?,
            category: need(e.category, k, "category")?,
            extra: e.extra.map(Cow::into_owned).unwrap_or_default(),
        })))
    } else if e.auction.is_some() {
        let k = "bid";
        Ok(Event::Bid(Bid {
            auction: need(e.auction, k, "auction")?,
            bidder: need(e.bidder, k, "bidder")?,
            price: need(e.price, k, "price")?,
            date_time: need(e.date_time, k, "dateTime")?.get(),
            extra: e.extra.map(Cow::into_owned).unwrap_or_default(),
        }))
    } else {
        Err("not a Nexmark event: it has none of \"name\" (person), \"itemName\" (auction) or \"auction\" (bid)".into())
    }
}

/// The common shape, read directly: one flat object of integers and strings without
/// escapes, each a known field once. Anything else (escapes, wrapped times, unknown or
/// repeated fields, malformed text) gives `None`, and the line goes to the full parser,
/// which reads or rejects it.
fn scan_flat(line: &str) -> Option<AnyEvent<'_>> {
    let b = line.as_bytes();
    let mut i = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    // A string starting at its opening quote; simple escapes are decoded.
    let string = |i: &mut usize| -> Option<Cow<'_, str>> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        let start = *i + 1;
        // Raw control characters are not allowed in JSON strings.
        let plain = |s: &[u8]| s.iter().fold(true, |ok, c| ok & (*c >= 0x20));
        let len = memchr::memchr2(b'"', b'\\', &b[start..])?;
        if !plain(&b[start..start + len]) {
            return None;
        }
        if b[start + len] == b'"' {
            *i = start + len + 1;
            // Quotes are ASCII, so the bytes between them are a whole UTF-8 slice.
            return line.get(start..start + len).map(Cow::Borrowed);
        }
        // Escaped: decoded run by run.
        let mut out = String::with_capacity(len + 16);
        let mut j = start;
        loop {
            let run = memchr::memchr2(b'"', b'\\', &b[j..])?;
            if !plain(&b[j..j + run]) {
                return None;
            }
            // The run ends at an ASCII byte, so it is a whole UTF-8 slice of the line.
            out.push_str(line.get(j..j + run)?);
            j += run;
            match b[j] {
                b'"' => break,
                b'\\' => {
                    out.push(match b.get(j + 1)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        _ => return None,
                    });
                    j += 2;
                }
                _ => return None,
            }
        }
        *i = j + 1;
        Some(Cow::Owned(out))
    };
    let int = |i: &mut usize| -> Option<i64> {
        let negative = b.get(*i) == Some(&b'-');
        if negative {
            *i += 1;
        }
        let start = *i;
        let mut n: i64 = 0;
        while let Some(d) = b.get(*i).filter(|c| c.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
            *i += 1;
        }
        let digits = *i - start;
        if digits == 0 || (digits > 1 && b[start] == b'0') {
            return None;
        }
        if matches!(b.get(*i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        if negative { Some(n) } else { n.checked_neg() }
    };
    fn set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
        if slot.is_some() {
            return None;
        }
        *slot = Some(value?);
        Some(())
    }
    let mut e = AnyEvent::default();
    ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        ws(&mut i);
        let key = string(&mut i)?;
        let key: &str = &key;
        ws(&mut i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        ws(&mut i);
        let text = |i: &mut usize| string(i);
        match key {
            // Bids are most events: their fields first.
            "auction" => set(&mut e.auction, int(&mut i))?,
            "bidder" => set(&mut e.bidder, int(&mut i))?,
            "price" => set(&mut e.price, int(&mut i))?,
            "dateTime" => set(&mut e.date_time, int(&mut i).map(Millis))?,
            "extra" => set(&mut e.extra, text(&mut i))?,
            "id" => set(&mut e.id, int(&mut i))?,
            "name" => set(&mut e.name, text(&mut i))?,
            "emailAddress" => set(&mut e.email_address, text(&mut i))?,
            "creditCard" => set(&mut e.credit_card, text(&mut i))?,
            "city" => set(&mut e.city, text(&mut i))?,
            "state" => set(&mut e.state, text(&mut i))?,
            "itemName" => set(&mut e.item_name, text(&mut i))?,
            "description" => set(&mut e.description, text(&mut i))?,
            "initialBid" => set(&mut e.initial_bid, int(&mut i))?,
            "reserve" => set(&mut e.reserve, int(&mut i))?,
            "expires" => set(&mut e.expires, int(&mut i).map(Millis))?,
            "seller" => set(&mut e.seller, int(&mut i))?,
            "category" => set(&mut e.category, int(&mut i))?,
            _ => return None,
        }
        ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {
                i += 1;
                ws(&mut i);
                return (i == b.len()).then_some(e);
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrapped_times_and_rejects_what_is_not_an_event() {
        let e = event_from_json(
            r#"{"auction":1,"bidder":2,"price":3,"dateTime":{"millis":44},"extra":""}"#,
        )
        .unwrap();
        assert_eq!(e.date_time(), 44);
        assert!(
            event_from_json(r#"{"foo":1}"#)
                .unwrap_err()
                .contains("not a Nexmark event")
        );
        assert!(
            event_from_json(r#"{"auction":1}"#)
                .unwrap_err()
                .contains("bidder")
        );
        assert!(event_from_json("{").is_err());
    }

    #[test]
    fn the_direct_scan_reads_generated_lines_as_the_full_parser_does() {
        let config = crate::generator::NexmarkConfig::default();
        let mut escaped = 0;
        for id in 0..3000 {
            let (event, _) = config.event_at(id);
            let line = event_to_json(&event);
            escaped += usize::from(line.contains('\\'));
            let scanned = scan_flat(&line).expect("a generated line takes the direct path");
            let full: AnyEvent = serde_json::from_str(&line).unwrap();
            assert_eq!(scanned.extra, full.extra, "{line}");
            assert_eq!(event_from_json(&line).unwrap(), event, "{line}");
        }
        assert!(
            escaped > 100,
            "generated extras contain escaped backslashes"
        );
    }

    #[test]
    fn lines_the_direct_scan_leaves_go_to_the_full_parser() {
        for (line, extra) in [
            (
                r#"{"auction":1,"bidder":2,"price":3,"dateTime":4,"extra":"a\u0041\"b"}"#,
                "aA\"b",
            ),
            (
                r#" { "auction" : 1 , "bidder":2,"price":3,"dateTime":{"millis":4},"more":[1]}"#,
                "",
            ),
            (
                r#"{"auction":1,"bidder":2,"price":3,"dateTime":4,"extra":"\t\\/"}"#,
                "\t\\/",
            ),
        ] {
            match event_from_json(line).unwrap() {
                Event::Bid(b) => {
                    assert_eq!((b.auction, b.bidder, b.price, b.date_time), (1, 2, 3, 4));
                    assert_eq!(b.extra, extra);
                }
                other => panic!("{line} read as {other:?}"),
            }
        }
        for bad in [
            r#"{"auction":1,"auction":1,"bidder":2,"price":3,"dateTime":4}"#,
            r#"{"auction":1,"bidder":2,"price":3.5,"dateTime":4}"#,
            r#"{"auction":01,"bidder":2,"price":3,"dateTime":4}"#,
            r#"{"auction":1,"bidder":2,"price":3,"dateTime":4} x"#,
            r#"{"auction":99999999999999999999,"bidder":2,"price":3,"dateTime":4}"#,
            "{\"auction\":1,\"bidder\":2,\"price\":3,\"dateTime\":4,\"extra\":\"a\u{1}\"}",
        ] {
            assert!(scan_flat(bad).is_none(), "{bad}");
            assert!(event_from_json(bad).is_err(), "{bad}");
        }
        assert_eq!(
            scan_flat(r#"{"auction":-9223372036854775808,"bidder":2,"price":3,"dateTime":4}"#)
                .and_then(|e| e.auction),
            Some(i64::MIN)
        );
    }
}
