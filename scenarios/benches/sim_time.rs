//! Criterion bench of the simulator's time compression: fault-free runs of a 3- and a
//! 5-member cluster under a 16-client KV load for [`SIM_DURATION_MS`] simulated ms of
//! workload (`catalog::bench_config`, the runs `detcd-sim bench` reports on).
//!
//! One measured iteration is one simulated second: each run's wall time is scaled by
//! 1000 / the run's simulated ms (boot and settle included), so criterion's `time` is
//! wall time per simulated second and its `elem/s` (simulated ms per wall second)
//! divided by 1000 is simulated time per wall time. The simulator exists only in `--cfg madsim`
//! builds: `ci/sim-bench` runs this bench there. A plain `cargo bench` has nothing to
//! measure and says so.

use criterion::{Criterion, criterion_group, criterion_main};

/// Simulated workload time per measured run, ms.
#[cfg(madsim)]
const SIM_DURATION_MS: u64 = 2_000;

/// Simulated ms one measured iteration stands for.
#[cfg(madsim)]
const SIM_MS_PER_ITER: u64 = 1_000;

/// Concurrent KV clients per run.
#[cfg(madsim)]
const SIM_CLIENTS: u64 = 16;

/// Cluster sizes measured.
#[cfg(madsim)]
const SIM_MEMBERS: [u64; 2] = [3, 5];

#[cfg(madsim)]
fn sim_time(c: &mut Criterion) {
    use criterion::Throughput;
    use detcd_scenarios::catalog::bench_config;
    use std::time::{Duration, Instant};

    let mut group = c.benchmark_group("sim_time");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SIM_MS_PER_ITER));
    for members in SIM_MEMBERS {
        group.bench_function(format!("{members}_members_{SIM_CLIENTS}_clients"), |b| {
            let mut seed = 0;
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let config = bench_config(seed, members, SIM_CLIENTS, SIM_DURATION_MS);
                    seed += 1;
                    let start = Instant::now();
                    let result = detcd_sim::run::run(&config);
                    let elapsed = start.elapsed();
                    let sim_ms = u32::try_from(result.sim_ms.max(1)).unwrap_or(u32::MAX);
                    wall += elapsed * u32::try_from(SIM_MS_PER_ITER).unwrap_or(1) / sim_ms;
                    assert!(
                        result.passed(),
                        "bench run seed {} failed: {:?}",
                        config.seed,
                        result.failures
                    );
                }
                wall
            })
        });
    }
    group.finish();
}

#[cfg(not(madsim))]
fn sim_time(_: &mut Criterion) {
    eprintln!("sim_time: the simulator needs a --cfg madsim build; run ci/sim-bench");
}

criterion_group!(benches, sim_time);
criterion_main!(benches);
