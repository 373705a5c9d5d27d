//! Throttling of failed authentication: a token bucket of failures per client address and
//! a lockout per token id after failures in a row. Pure (time is passed in) and bounded in
//! memory: at most [`MAX_TRACKED`] addresses and as many token ids; when the table is full
//! of live entries, further addresses share one bucket (an attacker spraying addresses
//! throttles itself, not the addresses already known), and further token ids go untracked
//! until entries expire.
//!
//! IPv6 addresses count by their /64 (one host usually holds a whole /64).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use driftwatch_config::collector::Limits;
use uuid::Uuid;

/// Most addresses (and most token ids) remembered at once.
pub const MAX_TRACKED: usize = 10_000;

/// Why a request is turned away before its token is even checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This address failed too often: retry after this long.
    Address(Duration),
    /// This token id is locked after failures in a row: retry after this long.
    TokenId(Duration),
}

impl Refusal {
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Address(d) | Refusal::TokenId(d) => d,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AddressKey {
    Ip(IpAddr),
    /// Addresses that found the table full.
    Overflow,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Failures this address may still make now (refills over time).
    tokens: f64,
    updated: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Lock {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Tables {
    addresses: HashMap<AddressKey, Bucket>,
    token_ids: HashMap<Uuid, Lock>,
    /// Purging scans the whole table: at most once a second.
    last_purge: Option<Instant>,
}

#[derive(Debug)]
pub struct AuthGuard {
    burst: f64,
    per_sec: f64,
    lockout_failures: u32,
    lockout: Duration,
    tables: Mutex<Tables>,
}

impl AuthGuard {
    pub fn new(limits: &Limits) -> Self {
        AuthGuard {
            burst: f64::from(limits.auth_failure_burst.max(1)),
            per_sec: f64::from(limits.auth_failures_per_minute.max(1)) / 60.0,
            lockout_failures: limits.lockout_failures.max(1),
            lockout: limits.lockout,
            tables: Mutex::new(Tables {
                addresses: HashMap::new(),
                token_ids: HashMap::new(),
                last_purge: None,
            }),
        }
    }

    /// Whether a request from `addr` naming `token_id` may have its token checked.
    pub fn check(
        &self,
        addr: Option<IpAddr>,
        token_id: Option<Uuid>,
        now: Instant,
    ) -> Result<(), Refusal> {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = token_id
            && let Some(lock) = tables.token_ids.get(&id)
            && let Some(until) = lock.locked_until
            && until > now
        {
            return Err(Refusal::TokenId(until - now));
        }
        if let Some(addr) = addr {
            let key = address_key(&tables, addr);
            if let Some(bucket) = tables.addresses.get(&key) {
                let tokens = self.refilled(bucket, now);
                if tokens < 1.0 {
                    let wait = (1.0 - tokens) / self.per_sec;
                    return Err(Refusal::Address(Duration::from_secs_f64(wait.max(0.001))));
                }
            }
        }
        Ok(())
    }

    /// Records a failed authentication. `token_id` is the id of a token that exists (so an
    /// attacker inventing ids fills nothing).
    pub fn failed(&self, addr: Option<IpAddr>, token_id: Option<Uuid>, now: Instant) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(addr) = addr {
            let mut key = ip_key(addr);
            if !tables.addresses.contains_key(&key) && tables.addresses.len() >= MAX_TRACKED {
                self.forget_settled(&mut tables, now);
                if tables.addresses.len() >= MAX_TRACKED {
                    key = AddressKey::Overflow;
                }
            }
            let burst = self.burst;
            let bucket = tables.addresses.entry(key).or_insert(Bucket {
                tokens: burst,
                updated: now,
            });
            let tokens = self.refilled(bucket, now);
            *bucket = Bucket {
                tokens: (tokens - 1.0).max(0.0),
                updated: now,
            };
        }
        if let Some(id) = token_id {
            if !tables.token_ids.contains_key(&id) && tables.token_ids.len() >= MAX_TRACKED {
                self.forget_settled(&mut tables, now);
                if tables.token_ids.len() >= MAX_TRACKED {
                    return;
                }
            }
            let lock = tables.token_ids.entry(id).or_insert(Lock {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            // A lock that ran out, or failures long ago, start the count again.
            if lock.locked_until.is_some_and(|until| until <= now)
                || now.saturating_duration_since(lock.last_failure) > self.lockout
            {
                *lock = Lock {
                    failures: 0,
                    last_failure: now,
                    locked_until: None,
                };
            }
            lock.failures += 1;
            lock.last_failure = now;
            if lock.failures >= self.lockout_failures {
                lock.locked_until = Some(now + self.lockout);
            }
        }
    }

    /// A successful authentication clears the token id's count.
    pub fn succeeded(&self, token_id: Uuid) {
        let mut tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        tables.token_ids.remove(&token_id);
    }

    /// How many entries are remembered (addresses, token ids).
    pub fn tracked(&self) -> (usize, usize) {
        let tables = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        (tables.addresses.len(), tables.token_ids.len())
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_sec).min(self.burst)
    }

    /// Drops entries that no longer hold anything back: full buckets, ended locks and
    /// counts older than the lockout.
    fn forget_settled(&self, tables: &mut Tables, now: Instant) {
        if tables
            .last_purge
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        tables.last_purge = Some(now);
        tables
            .addresses
            .retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        let lockout = self.lockout;
        tables.token_ids.retain(|_, lock| match lock.locked_until {
            Some(until) => until > now,
            None => now.saturating_duration_since(lock.last_failure) <= lockout,
        });
    }
}

/// IPv4 by address, IPv6 by /64; addresses beyond a full table share the overflow bucket.
fn address_key(tables: &Tables, addr: IpAddr) -> AddressKey {
    let key = ip_key(addr);
    if tables.addresses.contains_key(&key) || tables.addresses.len() < MAX_TRACKED {
        key
    } else {
        AddressKey::Overflow
    }
}

fn ip_key(addr: IpAddr) -> AddressKey {
    let ip = match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    };
    AddressKey::Ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> AuthGuard {
        AuthGuard::new(&Limits {
            auth_failures_per_minute: 60,
            auth_failure_burst: 3,
            lockout_failures: 4,
            lockout: Duration::from_secs(30),
            ..Limits::default()
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn an_address_is_throttled_after_its_burst_and_earns_failures_back() {
        let g = guard();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check(ip("10.0.0.1"), None, t0), Ok(()));
            g.failed(ip("10.0.0.1"), None, t0);
        }
        let refused = g.check(ip("10.0.0.1"), None, t0).unwrap_err();
        assert!(matches!(refused, Refusal::Address(_)));
        assert!(refused.retry_after() <= Duration::from_secs(1));
        // Another address is not affected.
        assert_eq!(g.check(ip("10.0.0.2"), None, t0), Ok(()));
        // One failure a second comes back.
        assert_eq!(
            g.check(ip("10.0.0.1"), None, t0 + Duration::from_secs(1)),
            Ok(())
        );
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let g = guard();
        let t0 = Instant::now();
        for i in 1..=3 {
            g.failed(ip(&format!("2001:db8:1:2::{i}")), None, t0);
        }
        assert!(g.check(ip("2001:db8:1:2::99"), None, t0).is_err());
        assert!(g.check(ip("2001:db8:1:3::1"), None, t0).is_ok());
    }

    #[test]
    fn a_token_id_locks_after_failures_in_a_row_until_the_lockout_ends() {
        let g = guard();
        let id = Uuid::now_v7();
        let t0 = Instant::now();
        for i in 0..4u64 {
            // From many addresses, so the address buckets do not interfere.
            let addr = ip(&format!("10.1.0.{i}"));
            assert_eq!(g.check(addr, Some(id), t0), Ok(()));
            g.failed(addr, Some(id), t0);
        }
        let refused = g.check(ip("10.9.9.9"), Some(id), t0).unwrap_err();
        assert_eq!(refused, Refusal::TokenId(Duration::from_secs(30)));
        assert!(g.check(ip("10.9.9.9"), Some(Uuid::now_v7()), t0).is_ok());
        let later = t0 + Duration::from_secs(30);
        assert_eq!(g.check(ip("10.9.9.9"), Some(id), later), Ok(()));
        // After the lock ends the count starts again.
        g.failed(ip("10.9.9.8"), Some(id), later);
        assert_eq!(g.check(ip("10.9.9.9"), Some(id), later), Ok(()));
    }

    #[test]
    fn success_clears_a_token_ids_count() {
        let g = guard();
        let id = Uuid::now_v7();
        let t0 = Instant::now();
        for _ in 0..3 {
            g.failed(None, Some(id), t0);
        }
        g.succeeded(id);
        g.failed(None, Some(id), t0);
        assert_eq!(g.check(None, Some(id), t0), Ok(()));
    }

    #[test]
    fn spraying_addresses_stays_bounded_and_spares_known_ones() {
        let g = guard();
        let t0 = Instant::now();
        // A known honest address with one failure.
        g.failed(ip("192.168.0.1"), None, t0);
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.failed(Some(addr), Some(Uuid::now_v7()), t0);
        }
        let (addresses, ids) = g.tracked();
        assert!(addresses <= MAX_TRACKED + 1, "{addresses}");
        assert!(ids <= MAX_TRACKED, "{ids}");
        // The sprayer's overflow bucket is empty, the known address still has failures left.
        let newcomer = IpAddr::V4(std::net::Ipv4Addr::new(172, 16, 0, 1));
        assert!(g.check(Some(newcomer), None, t0).is_err());
        assert!(g.check(ip("192.168.0.1"), None, t0).is_ok());
        // Once they settle, entries are forgotten and newcomers get their own bucket.
        let later = t0 + Duration::from_secs(3600);
        g.failed(Some(newcomer), None, later);
        assert!(g.tracked().0 < 10);
    }
}
