//! What the queries produce, with Beam's result types and JSON field names, so that a
//! result line reads as Beam's `toString` of the same result.

use serde::{Deserialize, Serialize};

use crate::model::{Auction, Bid};

/// Query 2: a bid's auction and price.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuctionPrice {
    /// The auction.
    pub auction: i64,
    /// The bid's price, in cents.
    pub price: i64,
}

/// Query 3: a seller in OR, ID or CA and one of their category-10 auctions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NameCityStateId {
    /// The seller's name.
    pub name: String,
    /// The seller's city.
    pub city: String,
    /// The seller's state.
    pub state: String,
    /// The auction's id.
    pub id: i64,
}

/// Query 4: the average winning price in a category over a sliding window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryPrice {
    /// The category.
    pub category: i64,
    /// The average winning price, rounded to a cent.
    pub price: i64,
    /// Whether this is the window's last result.
    pub is_last: bool,
}

/// Query 5: an auction with the most bids in a window, and how many.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuctionCount {
    /// The auction.
    pub auction: i64,
    /// Its bids in the window.
    pub num: i64,
}

/// Query 6: a seller's average selling price over their last ten closed auctions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SellerPrice {
    /// The seller.
    pub seller: i64,
    /// The average price, rounded to a cent.
    pub price: i64,
}

/// Query 8: a new person who opened an auction in the same window.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdNameReserve {
    /// The person.
    pub id: i64,
    /// Their name.
    pub name: String,
    /// The auction's reserve price.
    pub reserve: i64,
}

/// Query 9 (and the winning bids behind 4 and 6): a closed auction and its winning bid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionBid {
    /// The auction.
    pub auction: Auction,
    /// The bid that won it.
    pub bid: Bid,
}

/// Queries 11 and 12: a bidder's bids in a session (or a processing-time pane).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BidsPerSession {
    /// The bidder.
    pub person_id: i64,
    /// How many bids.
    pub bids_per_session: i64,
}

/// Query 10: a window's log files are written.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Done {
    /// What was written.
    pub message: String,
}

sluice::serde_coder!(
    AuctionPrice,
    NameCityStateId,
    CategoryPrice,
    AuctionCount,
    SellerPrice,
    IdNameReserve,
    AuctionBid,
    BidsPerSession,
    Done
);

/// A result's JSON line.
pub fn to_json<T: Serialize>(result: &T) -> String {
    serde_json::to_string(result).unwrap_or_default()
}
