//! Times the search on generated cas-register histories (scratch; replaced later).
use detcd_checker::models::generate::{GenConfig, register_history};
use detcd_checker::models::{CasRegister, RegisterOp, RegisterOutput};
use detcd_checker::wgl::{Limits, check_with};

fn main() {
    for (ops, unk, vmax) in [
        (10_000usize, 15u32, None),
        (10_000, 15, Some(5)),
        (10_000, 0, Some(5)),
    ] {
        for seed in 0..3 {
            let cfg = GenConfig {
                values_max: vmax,
                ..GenConfig::new(seed, ops, 5, unk)
            };
            let mut h = register_history(&cfg, true);
            // Mutate: a late read returns a value never written.
            let at = h.len() * 9 / 10;
            let r = (at..h.len())
                .find(|&i| matches!(h[i].output, Some(RegisterOutput::Read(_))))
                .unwrap();
            h[r].output = Some(RegisterOutput::Read(Some(-5)));
            let t = std::time::Instant::now();
            let rep = check_with(
                &CasRegister,
                &h,
                &Limits {
                    step_budget: 20_000_000,
                    memo_entries_max: 4_000_000,
                },
            );
            println!(
                "phantom read at {r}: ops {ops} unk {unk} vmax {vmax:?} seed {seed}: {:?} steps {} memo {} in {:?}",
                rep.outcome.verdict(),
                rep.steps,
                rep.memo_entries,
                t.elapsed()
            );
            // Mutate: a late read returns the value written 3 writes before.
            let mut h = register_history(&cfg, true);
            let writes: Vec<usize> = (0..h.len())
                .filter(|&i| matches!(h[i].input.op, RegisterOp::Write(_)) && h[i].ret.is_some())
                .collect();
            let w = writes[writes.len() * 9 / 10];
            let RegisterOp::Write(v) = h[w].input.op else {
                unreachable!()
            };
            let later = h[writes[writes.len() * 9 / 10 + 3]].ret.unwrap();
            let r = (0..h.len())
                .find(|&i| {
                    h[i].call > later && matches!(h[i].output, Some(RegisterOutput::Read(_)))
                })
                .unwrap();
            h[r].output = Some(RegisterOutput::Read(Some(v)));
            let t = std::time::Instant::now();
            let rep = check_with(
                &CasRegister,
                &h,
                &Limits {
                    step_budget: 20_000_000,
                    memo_entries_max: 4_000_000,
                },
            );
            println!(
                "stale read at {r}: ops {ops} unk {unk} vmax {vmax:?} seed {seed}: {:?} steps {} memo {} in {:?}",
                rep.outcome.verdict(),
                rep.steps,
                rep.memo_entries,
                t.elapsed()
            );
        }
    }
}
