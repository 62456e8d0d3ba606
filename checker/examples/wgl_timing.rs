//! Times the search on generated cas-register histories (scratch; replaced later).
use detcd_checker::models::CasRegister;
use detcd_checker::models::generate::{GenConfig, register_history};
use detcd_checker::wgl::{Limits, check_with};

fn main() {
    for (ops, unk) in [(10_000usize, 15u32), (10_000, 20), (100_000, 15)] {
        for seed in 0..3 {
            let h = register_history(
                &GenConfig {
                    seed,
                    ops,
                    clients: 5,
                    keys: 1,
                    unknown_per_mille: unk,
                },
                true,
            );
            let t = std::time::Instant::now();
            let r = check_with(
                &CasRegister,
                &h,
                &Limits {
                    step_budget: 100_000_000,
                    memo_entries_max: 4_000_000,
                },
            );
            println!(
                "ops {ops} unk {unk} seed {seed}: {:?} steps {} memo {} in {:?}",
                r.outcome.verdict(),
                r.steps,
                r.memo_entries,
                t.elapsed()
            );
        }
    }
}
