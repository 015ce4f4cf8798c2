//! Scraping: targets, the per-target loop, fetching and processing.

pub mod fetch;
pub mod manager;
pub mod processor;
pub mod run;
pub mod target;
pub mod total;
