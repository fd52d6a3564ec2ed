//! Nexmark on sluice.
//!
//! Nexmark models an online auction: people register, open auctions and bid. Beam runs
//! its thirteen queries over generated events against every runner. This crate has:
//!
//! - [`generator`]: Beam's Java event generator, reproduced event for event;
//! - [`model`]: people, auctions, bids and events, with Beam's JSON field names;
//! - [`json`]: JSON-lines event files as Beam's Python Nexmark launcher reads them.
#![deny(missing_docs)]

pub mod generator;
pub mod java_random;
pub mod json;
pub mod model;
