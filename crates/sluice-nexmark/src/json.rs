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

use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use sluice::prelude::*;

use crate::generator::{Generator, NexmarkConfig};
use crate::model::{Auction, Bid, Event, Person};

/// Reads events from JSON-lines files matching `pattern`, stamped with their event
/// times. A line that is not an event fails the job with the line and what is wrong.
pub fn read_events(p: &Pipeline, name: &str, pattern: &str) -> sluice::Result<PCollection<Event>> {
    let lines = p.read_text(name, pattern)?;
    Ok(lines.composite("Parse", |lines| {
        lines
            .try_map("FromJson", |line: String| {
                event_from_json(&line).map_err(|e| format!("not a Nexmark event ({e}): {line}"))
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
#[derive(Deserialize)]
#[serde(untagged)]
enum Millis {
    Plain(i64),
    Wrapped { millis: i64 },
}

impl Millis {
    fn get(self) -> i64 {
        match self {
            Millis::Plain(ms) | Millis::Wrapped { millis: ms } => ms,
        }
    }
}

/// Every field any event has; which are present decides the kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyEvent {
    id: Option<i64>,
    name: Option<String>,
    email_address: Option<String>,
    credit_card: Option<String>,
    city: Option<String>,
    state: Option<String>,
    date_time: Option<Millis>,
    extra: Option<String>,
    item_name: Option<String>,
    description: Option<String>,
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
    let e: AnyEvent = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if e.name.is_some() {
        let k = "person";
        Ok(Event::Person(Person {
            id: need(e.id, k, "id")?,
            name: need(e.name, k, "name")?,
            email_address: need(e.email_address, k, "emailAddress")?,
            credit_card: need(e.credit_card, k, "creditCard")?,
            city: need(e.city, k, "city")?,
            state: need(e.state, k, "state")?,
            date_time: need(e.date_time, k, "dateTime")?.get(),
            extra: e.extra.unwrap_or_default(),
        }))
    } else if e.item_name.is_some() {
        let k = "auction";
        Ok(Event::Auction(Auction {
            id: need(e.id, k, "id")?,
            item_name: need(e.item_name, k, "itemName")?,
            description: need(e.description, k, "description")?,
            initial_bid: need(e.initial_bid, k, "initialBid")?,
            reserve: need(e.reserve, k, "reserve")?,
            date_time: need(e.date_time, k, "dateTime")?.get(),
            expires: need(e.expires, k, "expires")?.get(),
            seller: need(e.seller, k, "seller")?,
            category: need(e.category, k, "category")?,
            extra: e.extra.unwrap_or_default(),
        }))
    } else if e.auction.is_some() {
        let k = "bid";
        Ok(Event::Bid(Bid {
            auction: need(e.auction, k, "auction")?,
            bidder: need(e.bidder, k, "bidder")?,
            price: need(e.price, k, "price")?,
            date_time: need(e.date_time, k, "dateTime")?.get(),
            extra: e.extra.unwrap_or_default(),
        }))
    } else {
        Err("not a Nexmark event: it has none of \"name\" (person), \"itemName\" (auction) or \"auction\" (bid)".into())
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
}
