//! `ipvsadm --rate`: IPVS's rate estimator (`ip_vs_est.c`), per service and
//! per real server.
//!
//! Every 2 seconds dpvsd samples the traffic counters. Each sample's
//! difference is scaled (connections and packets by 2^9, bytes by 2^4) and
//! moves the smoothed estimate a quarter of the way: `avg += (rate - avg) / 4`.
//! Read back as IPVS does: `(avg + 0x1FF) >> 10` connections or packets per
//! second, `(avg + 0xF) >> 5` bytes per second. So a steady load reads close
//! to its true rate after a few samples, and the rates fall back to zero a
//! few samples after traffic stops. The raw counters are used: `-Z` does not
//! disturb the rates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use dataplane::{ServiceKey, Stats, TrafficStats};

/// How often the estimator samples (IPVS: 2 s).
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

type Key = (ServiceKey, Option<(IpAddr, u16)>);

/// One estimator: the last counters and the scaled averages.
#[derive(Debug, Clone, Copy, Default)]
struct Est {
    last: TrafficStats,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

/// Rates per second, as `--rate` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

fn smooth(avg: &mut i64, now: u64, last: u64, shift: u32) {
    let rate = (now.wrapping_sub(last) as i64) << shift;
    *avg += (rate - *avg) >> 2;
}

impl Est {
    fn sample(&mut self, t: &TrafficStats) {
        smooth(&mut self.cps, t.conns, self.last.conns, 9);
        smooth(&mut self.inpps, t.inpkts, self.last.inpkts, 9);
        smooth(&mut self.outpps, t.outpkts, self.last.outpkts, 9);
        smooth(&mut self.inbps, t.inbytes, self.last.inbytes, 4);
        smooth(&mut self.outbps, t.outbytes, self.last.outbytes, 4);
        self.last = *t;
    }

    fn rates(&self) -> Rates {
        let per = |v: i64, round: i64, shift: u32| ((v.max(0) + round) >> shift) as u64;
        Rates {
            cps: per(self.cps, 0x1FF, 10),
            inpps: per(self.inpps, 0x1FF, 10),
            outpps: per(self.outpps, 0x1FF, 10),
            inbps: per(self.inbps, 0xF, 5),
            outbps: per(self.outbps, 0xF, 5),
        }
    }
}

/// The estimators of every service and real server.
#[derive(Default)]
pub struct Estimators(Mutex<HashMap<Key, Est>>);

impl Estimators {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Est>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One 2-second sample of `now` (raw counters). A service or real server
    /// seen for the first time starts from its current counters (rate 0);
    /// those gone from `now` are forgotten.
    pub fn sample(&self, now: &Stats) {
        let mut m = self.map();
        let mut seen = HashMap::with_capacity(m.len());
        let mut one = |key: Key, t: &TrafficStats| {
            let e = m.remove(&key).map_or_else(
                || Est {
                    last: *t,
                    ..Est::default()
                },
                |mut e| {
                    e.sample(t);
                    e
                },
            );
            seen.insert(key, e);
        };
        for s in &now.services {
            one((s.key, None), &s.traffic);
            for d in &s.dests {
                one((s.key, Some((d.addr, d.port))), &d.traffic);
            }
        }
        *m = seen;
    }

    pub fn service(&self, key: &ServiceKey) -> Rates {
        self.map()
            .get(&(*key, None))
            .map(Est::rates)
            .unwrap_or_default()
    }

    pub fn dest(&self, key: &ServiceKey, addr: IpAddr, port: u16) -> Rates {
        self.map()
            .get(&(*key, Some((addr, port))))
            .map(Est::rates)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(conns: u64, pkts: u64, bytes: u64) -> TrafficStats {
        TrafficStats {
            conns,
            inpkts: pkts,
            outpkts: pkts / 2,
            inbytes: bytes,
            outbytes: bytes * 2,
        }
    }

    #[test]
    fn a_steady_load_converges_to_its_rate_and_falls_back_to_zero() {
        let mut e = Est::default();
        // 100 conn/s, 1000 pkt/s, 100 kB/s for 2 s per sample.
        let mut t = TrafficStats::default();
        e.sample(&t);
        let mut seen = Vec::new();
        for _ in 0..40 {
            t.conns += 200;
            t.inpkts += 2000;
            t.outpkts += 1000;
            t.inbytes += 200_000;
            t.outbytes += 400_000;
            e.sample(&t);
            seen.push(e.rates().cps);
        }
        // First sample: a quarter of the way (IPVS's smoothing).
        assert_eq!(seen[0], 25);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        // Integer smoothing settles a hair under the true rate, as in IPVS.
        let r = e.rates();
        let near = |got: u64, want: u64| got <= want && got * 1000 >= want * 999;
        assert_eq!(r.cps, 100);
        assert!(near(r.inpps, 1000) && near(r.outpps, 500), "{r:?}");
        assert!(near(r.inbps, 100_000) && near(r.outbps, 200_000), "{r:?}");
        // Traffic stops: back to zero within a minute or two of samples.
        for _ in 0..60 {
            e.sample(&t);
        }
        assert_eq!(e.rates(), Rates::default());
    }

    #[test]
    fn estimators_start_at_zero_and_forget_what_is_gone() {
        let key = ServiceKey {
            proto: dataplane::Proto::Tcp,
            vip: "10.0.0.1".parse().unwrap(),
            vport: 80,
        };
        let stats = |t: TrafficStats| Stats {
            services: vec![dataplane::ServiceStats {
                key,
                acl_drops: Default::default(),
                conn_limit_drops: 0,
                traffic: t,
                dests: vec![],
            }],
            ..Default::default()
        };
        let est = Estimators::default();
        est.sample(&stats(traffic(1000, 1000, 1000)));
        assert_eq!(
            est.service(&key),
            Rates::default(),
            "old counters are not a rate"
        );
        est.sample(&stats(traffic(1400, 1000, 1000)));
        assert_eq!(est.service(&key).cps, 50);
        est.sample(&Stats::default());
        assert_eq!(est.service(&key), Rates::default());
    }
}
