//! Times the import and the check of a Jepsen cas-register history.
//!
//! `cargo run --release -p detcd-checker --example wgl_jepsen -- [FILE.edn]`
//!
//! Without a file, generates the benchmark history (10,000 operations from 5 clients,
//! about 1.5% of them timing out, seed 1), writes it to
//! `$CARGO_TARGET_DIR/cas-register-10k.edn` (or the temp dir) and checks that.

use std::time::Instant;

use detcd_checker::jepsen::{import_register, write_register};
use detcd_checker::models::CasRegister;
use detcd_checker::models::generate::{GenConfig, register_history};
use detcd_checker::wgl::{Limits, Partition, check_with};

/// Operations to invoke for a cas-register history of about 10,000 operations after
/// failed cas operations are left out (10,091 with seed 1).
const CAS_INVOKED_FOR_10K: usize = 12_450;

/// Step budget of this example's check.
const STEP_BUDGET: u64 = 50_000_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = match std::env::args().nth(1) {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            let dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join("cas-register-10k.edn");
            let ops = register_history(&GenConfig::new(1, CAS_INVOKED_FOR_10K, 5, 15), true);
            std::fs::write(&path, write_register(&ops))?;
            println!("wrote {}", path.display());
            path
        }
    };
    let text = std::fs::read_to_string(&path)?;
    let start = Instant::now();
    let ops = import_register(&text, true)?;
    let imported = start.elapsed();
    let unknown = ops.iter().filter(|o| o.output.is_none()).count();
    let keys: std::collections::BTreeSet<_> =
        ops.iter().map(|o| CasRegister.key(&o.input)).collect();
    let start = Instant::now();
    let report = check_with(&CasRegister, &ops, &Limits::with_step_budget(STEP_BUDGET));
    let checked = start.elapsed();
    println!(
        "{} operations ({unknown} unknown outcome, {} keys): import {imported:?}, check \
         {checked:?}, {} steps, {} memo entries: {:?}",
        ops.len(),
        keys.len(),
        report.steps,
        report.memo_entries,
        report.outcome.verdict()
    );
    Ok(())
}
