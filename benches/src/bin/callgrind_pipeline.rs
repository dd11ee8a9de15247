//! Drives a fixed number of packets through the benchmark rigs, for counting instructions per
//! packet with `valgrind --tool=callgrind` (see `benches/callgrind.sh`, which runs N and 2N
//! packets and takes the difference so that start-up cost cancels).
//!
//! Usage: `callgrind_pipeline MODE PACKETS [BURST]`, MODE one of
//! - `worker`: `Worker::poll_once` on memory ports (rx + pipeline + output + tx);
//! - `pipeline`: refill a batch from the pool + `pipeline::run` + buffers back;
//! - `refill`: the same refill and return without the pipeline (subtract from `pipeline`).

use podswitch_benches::{udp_a_to_b, PipelineRig, WorkerRig};
use podswitch_dataplane::batch::Next;
use podswitch_dataplane::testkit::{self, POD_A, POD_B};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(packets)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: callgrind_pipeline worker|pipeline|refill PACKETS [BURST]");
        return ExitCode::from(2);
    };
    let packets: usize = packets;
    let burst: usize = args.get(2).and_then(|b| b.parse().ok()).unwrap_or(32);
    let bursts = packets.div_ceil(burst);
    let done = match mode.as_str() {
        "worker" => {
            let mut rig = match WorkerRig::a_to_b(burst) {
                Ok(rig) => rig,
                Err(e) => {
                    eprintln!("cannot create the worker's io_uring: {e}");
                    return ExitCode::FAILURE;
                }
            };
            (0..bursts).map(|_| rig.poll()).sum::<usize>()
        }
        "pipeline" | "refill" => {
            let tables = testkit::tables_with(true, 1500, 0);
            let mut rig = PipelineRig::new(tables, POD_A, vec![udp_a_to_b()], burst);
            rig.assert_verdict(|_| Next::Output(POD_B));
            if mode == "pipeline" {
                (0..bursts).map(|_| rig.refill_and_run()).sum::<usize>()
            } else {
                (0..bursts).map(|_| rig.refill_only()).sum::<usize>()
            }
        }
        other => {
            eprintln!("unknown mode {other:?}: expected worker, pipeline or refill");
            return ExitCode::from(2);
        }
    };
    println!("{mode}: {done} packets in {bursts} bursts of {burst}");
    ExitCode::SUCCESS
}
