//! The Nexmark data model: people, auctions and bids, and the events that carry them.
//!
//! Field names and units follow Beam's model: ids and prices are integers (prices in
//! cents), times are milliseconds since the Unix epoch. In JSON the fields have Beam's
//! names (`emailAddress`, `itemName`, `dateTime`, ...), so event files interchange with
//! Beam's Nexmark launchers.

use serde::{Deserialize, Serialize};
use sluice::{Coder, CoderError, Timestamp};

/// A person: a seller of auctions or a bidder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Unique id, from 1000.
    pub id: i64,
    /// "First Last".
    pub name: String,
    /// Email address.
    pub email_address: String,
    /// Four groups of four digits.
    pub credit_card: String,
    /// City of residence.
    pub city: String,
    /// Two-letter US state.
    pub state: String,
    /// When the person registered (ms since the epoch).
    pub date_time: i64,
    /// Padding to the configured average event size.
    pub extra: String,
}

/// An item put up for auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    /// Unique id, from 1000.
    pub id: i64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// Opening price, in cents.
    pub initial_bid: i64,
    /// Reserve price, in cents: the auction sells only at this price or above.
    pub reserve: i64,
    /// When the auction opened (ms since the epoch).
    pub date_time: i64,
    /// When the auction closes (ms since the epoch).
    pub expires: i64,
    /// The id of the selling person.
    pub seller: i64,
    /// Category id, from 10.
    pub category: i64,
    /// Padding to the configured average event size.
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    /// The auction bid on.
    pub auction: i64,
    /// The id of the bidding person.
    pub bidder: i64,
    /// The bid, in cents.
    pub price: i64,
    /// When the bid was placed (ms since the epoch).
    pub date_time: i64,
    /// Padding to the configured average event size.
    pub extra: String,
}

/// One Nexmark event: exactly one of a new person, a new auction or a bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A person registered (boxed: bids, the most frequent events, stay small to move).
    Person(Box<Person>),
    /// An auction opened (boxed, as a person is).
    Auction(Box<Auction>),
    /// A bid was placed.
    Bid(Bid),
}

impl Event {
    /// When the event happened (ms since the epoch).
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    /// The event's time as an element timestamp.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_millis(self.date_time())
    }

    /// The person, if this is a new person.
    pub fn as_person(&self) -> Option<&Person> {
        match self {
            Event::Person(p) => Some(p),
            _ => None,
        }
    }

    /// The auction, if this is a new auction.
    pub fn as_auction(&self) -> Option<&Auction> {
        match self {
            Event::Auction(a) => Some(a),
            _ => None,
        }
    }

    /// The bid, if this is a bid.
    pub fn as_bid(&self) -> Option<&Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }
}

/// An event serialises as the person, auction or bid it carries (Beam's event JSON).
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Event::Person(p) => p.serialize(serializer),
            Event::Auction(a) => a.serialize(serializer),
            Event::Bid(b) => b.serialize(serializer),
        }
    }
}

impl Coder for Person {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.id.encode_to(out)?;
        self.name.encode_to(out)?;
        self.email_address.encode_to(out)?;
        self.credit_card.encode_to(out)?;
        self.city.encode_to(out)?;
        self.state.encode_to(out)?;
        self.date_time.encode_to(out)?;
        self.extra.encode_to(out)
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(Person {
            id: i64::decode_from(input)?,
            name: String::decode_from(input)?,
            email_address: String::decode_from(input)?,
            credit_card: String::decode_from(input)?,
            city: String::decode_from(input)?,
            state: String::decode_from(input)?,
            date_time: i64::decode_from(input)?,
            extra: String::decode_from(input)?,
        })
    }
}

impl Coder for Auction {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.id.encode_to(out)?;
        self.item_name.encode_to(out)?;
        self.description.encode_to(out)?;
        self.initial_bid.encode_to(out)?;
        self.reserve.encode_to(out)?;
        self.date_time.encode_to(out)?;
        self.expires.encode_to(out)?;
        self.seller.encode_to(out)?;
        self.category.encode_to(out)?;
        self.extra.encode_to(out)
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(Auction {
            id: i64::decode_from(input)?,
            item_name: String::decode_from(input)?,
            description: String::decode_from(input)?,
            initial_bid: i64::decode_from(input)?,
            reserve: i64::decode_from(input)?,
            date_time: i64::decode_from(input)?,
            expires: i64::decode_from(input)?,
            seller: i64::decode_from(input)?,
            category: i64::decode_from(input)?,
            extra: String::decode_from(input)?,
        })
    }
}

impl Coder for Bid {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        self.auction.encode_to(out)?;
        self.bidder.encode_to(out)?;
        self.price.encode_to(out)?;
        self.date_time.encode_to(out)?;
        self.extra.encode_to(out)
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        Ok(Bid {
            auction: i64::decode_from(input)?,
            bidder: i64::decode_from(input)?,
            price: i64::decode_from(input)?,
            date_time: i64::decode_from(input)?,
            extra: String::decode_from(input)?,
        })
    }
}

impl Coder for Event {
    fn encode_to(&self, out: &mut Vec<u8>) -> Result<(), CoderError> {
        match self {
            Event::Person(p) => {
                out.push(0);
                p.encode_to(out)
            }
            Event::Auction(a) => {
                out.push(1);
                a.encode_to(out)
            }
            Event::Bid(b) => {
                out.push(2);
                b.encode_to(out)
            }
        }
    }

    fn decode_from(input: &mut &[u8]) -> Result<Self, CoderError> {
        let (&tag, rest) = input
            .split_first()
            .ok_or_else(|| CoderError::truncated("Event"))?;
        *input = rest;
        match tag {
            0 => Ok(Event::Person(Box::new(Person::decode_from(input)?))),
            1 => Ok(Event::Auction(Box::new(Auction::decode_from(input)?))),
            2 => Ok(Event::Bid(Bid::decode_from(input)?)),
            t => Err(CoderError::decode(
                "Event",
                format!("unknown event tag {t}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_their_coder() {
        let events = [
            Event::Person(Box::new(Person {
                id: 1000,
                name: "Peter Jones".into(),
                email_address: "a@b.com".into(),
                credit_card: "0000 1111 2222 3333".into(),
                city: "Kent".into(),
                state: "WA".into(),
                date_time: 1_436_918_400_000,
                extra: "x".into(),
            })),
            Event::Auction(Box::new(Auction {
                id: 1001,
                item_name: "i".into(),
                description: "d".into(),
                initial_bid: 5,
                reserve: 9,
                date_time: 1,
                expires: 2,
                seller: 1000,
                category: 10,
                extra: String::new(),
            })),
            Event::Bid(Bid {
                auction: 1001,
                bidder: 1000,
                price: -3,
                date_time: 7,
                extra: "e".into(),
            }),
        ];
        let mut bytes = Vec::new();
        for e in &events {
            e.encode_to(&mut bytes).unwrap();
        }
        let mut input = &bytes[..];
        for e in &events {
            assert_eq!(&Event::decode_from(&mut input).unwrap(), e);
        }
        assert!(input.is_empty());
        assert!(Event::decode_from(&mut &[9u8][..]).is_err());
    }
}
