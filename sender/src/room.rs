//! How a destination's capacity is shared, so that one source's volume cannot starve the others.
//!
//! One counter holds every sample queued, batching or in flight (see the crate's invariant); what differs
//! is how far each kind of sample may fill it:
//!
//! | kind of sample | may fill the queue up to |
//! |---|---|
//! | health series (`up`, `scrape_duration_seconds`, … of every target) | `capacity` |
//! | critical tier | `capacity − health room` |
//! | standard tier | `capacity − health room − critical room` |
//!
//! - The **health room** (`capacity / 50`, 2 000 samples at the default 100 000) is kept for the
//!   synthetic series: the five of each of 400 targets scraped every second fit in it, so a target's `up`
//!   is never dropped because another target (or tier) filled the queue. Only an outage long enough to
//!   fill the queue with health series themselves drops them.
//! - The **critical room** (`capacity / 5`, 20 000) is the critical tier's own: standard-tier volume
//!   cannot take it, so the autoscaling inputs keep flowing while a large standard job is backed up.
//! - One scrape may take at most **a quarter of the queue** ([`QueueOptions::max_scrape_samples`],
//!   25 000 at the default): the agent refuses a larger scrape whole, before it materialises its series,
//!   with `up` = 0 and the reason (as `sample_limit` does), rather than let it fill the queue and have
//!   its tail and other targets' samples dropped at random.
//!
//! The rooms are fractions of `capacity` rather than options of their own, so raising `capacity` for a
//! large target raises them in proportion and no combination of options can leave a tier without room.
//! At capacities below 50 (tests) the health room is empty and every sample shares one room.

use surge_model::Tier;

use crate::QueueOptions;

/// What a sample is, for the capacity it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// A sample of the given tier.
    Tier(Tier),
    /// A health series (`up` and the other synthetic series), of any tier.
    Health,
}

impl QueueOptions {
    /// Samples only health series may use: `capacity / 50`.
    pub fn health_room(&self) -> usize {
        self.capacity / 50
    }

    /// Samples the standard tier may not use: `capacity / 5`.
    pub fn critical_room(&self) -> usize {
        self.capacity / 5
    }

    /// The most samples one scrape may hand to this destination: a quarter of `capacity` (at least 1).
    /// The agent refuses a larger scrape whole (see the module documentation).
    pub fn max_scrape_samples(&self) -> usize {
        (self.capacity / 4).max(1)
    }

    /// How far samples of `room` may fill the queue.
    pub(crate) fn ceiling(&self, room: Room) -> usize {
        match room {
            Room::Health => self.capacity,
            Room::Tier(Tier::Critical) => self.capacity - self.health_room(),
            Room::Tier(Tier::Standard) => self.capacity - self.health_room() - self.critical_room(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_at_the_default_capacity() {
        let q = QueueOptions::default();
        assert_eq!(q.ceiling(Room::Health), 100_000);
        assert_eq!(q.ceiling(Room::Tier(Tier::Critical)), 98_000);
        assert_eq!(q.ceiling(Room::Tier(Tier::Standard)), 78_000);
        assert_eq!(q.max_scrape_samples(), 25_000);
    }

    #[test]
    fn tiny_capacities_share_one_room_and_never_underflow() {
        for capacity in 0..60 {
            let q = QueueOptions {
                capacity,
                ..QueueOptions::default()
            };
            let standard = q.ceiling(Room::Tier(Tier::Standard));
            let critical = q.ceiling(Room::Tier(Tier::Critical));
            assert!(standard <= critical && critical <= q.ceiling(Room::Health));
            assert!(q.max_scrape_samples() >= 1);
        }
        let q = QueueOptions {
            capacity: 10,
            ..QueueOptions::default()
        };
        assert_eq!(q.ceiling(Room::Tier(Tier::Critical)), 10);
    }
}
