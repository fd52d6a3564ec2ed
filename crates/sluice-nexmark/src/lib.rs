//! Nexmark on sluice.
//!
//! Nexmark models an online auction: people register, open auctions and bid. Beam runs
//! its thirteen queries over generated events against every runner. This crate has:
//!
//! - [`generator`]: Beam's Java event generator, reproduced event for event;
//! - [`model`]: people, auctions, bids and events, with Beam's JSON field names;
//! - [`json`]: JSON-lines event files as Beam's Python Nexmark launcher reads them;
//! - [`source`]: the generator as a bounded or unbounded sluice source;
//! - [`queries`]: queries 0 to 12 and their [`results`].
#![deny(missing_docs)]

pub mod generator;
pub mod java_random;
pub mod json;
pub mod model;
pub mod queries;
pub mod results;
pub mod source;
