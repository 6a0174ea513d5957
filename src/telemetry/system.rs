//! Process and machine figures sampled off the hot path: the machine's CPU use as a Prometheus
//! gauge, and the latest sample for the live dashboard. (Process CPU seconds and resident memory
//! are also exported under their standard names by `metrics-process`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::metrics::SYSTEM_CPU;

/// The newest sample, readable from any task.
#[derive(Debug, Default)]
pub struct SystemFigures {
    process_cpu_cores: AtomicU64,
    rss_bytes: AtomicU64,
    system_cpu_ratio: AtomicU64,
}

/// One sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SystemSample {
    /// Process CPU use over the last interval, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub rss_bytes: u64,
    /// Whole-machine CPU use, 0..1.
    pub system_cpu_ratio: f64,
}

impl SystemFigures {
    pub fn latest(&self) -> SystemSample {
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        SystemSample {
            cpu_cores: f(&self.process_cpu_cores),
            rss_bytes: self.rss_bytes.load(Ordering::Relaxed),
            system_cpu_ratio: f(&self.system_cpu_ratio),
        }
    }

    fn store(&self, sample: SystemSample) {
        self.process_cpu_cores
            .store(sample.cpu_cores.to_bits(), Ordering::Relaxed);
        self.rss_bytes.store(sample.rss_bytes, Ordering::Relaxed);
        self.system_cpu_ratio
            .store(sample.system_cpu_ratio.to_bits(), Ordering::Relaxed);
    }
}

/// Samples every `period` on a blocking-friendly task until the runtime shuts down.
pub fn spawn(period: Duration) -> (Arc<SystemFigures>, tokio::task::JoinHandle<()>) {
    let figures = Arc::new(SystemFigures::default());
    let shared = Arc::clone(&figures);
    let gauge = metrics::gauge!(SYSTEM_CPU);
    let task = tokio::spawn(async move {
        let mut system = System::new();
        let pid = sysinfo::get_current_pid().ok();
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            let sample = sample(&mut system, pid);
            gauge.set(sample.system_cpu_ratio);
            shared.store(sample);
        }
    });
    (figures, task)
}

fn sample(system: &mut System, pid: Option<Pid>) -> SystemSample {
    system.refresh_cpu_usage();
    let mut sample = SystemSample {
        system_cpu_ratio: (system.global_cpu_usage() as f64 / 100.0).clamp(0.0, 1.0),
        ..SystemSample::default()
    };
    if let Some(pid) = pid {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        if let Some(process) = system.process(pid) {
            sample.cpu_cores = process.cpu_usage() as f64 / 100.0;
            sample.rss_bytes = process.memory();
        }
    }
    sample
}
