//! ipfailover's model checker: the real cores of the pair (heartbeatd's
//! [`Sender`](ipfailover::sender::Sender), failoverd's
//! [`Failover`](ipfailover::failover::Failover)) and of a group
//! ([`Group`](ipfailover::group::Group)), fed with events and a virtual clock by a small
//! world (links, a LAN, etcd, crashes, stalls, commands), explored exhaustively within a
//! fault budget and a horizon, against the properties the docs promise.
//!
//! - [`check`]: the explorer (every reachable state once) and the replay of a run.
//! - [`pair`]: the pair's world and properties.
//! - [`group`]: the group's world and properties.
//! - [`suite`]: the checks `make test` and `bench/run --model` run.
//!
//! Scope, abstractions and figures: docs/hardening.md, "The model checker".

#![forbid(unsafe_code)]

pub mod check;
pub mod group;
pub mod pair;
pub mod suite;
