//! GPU renderer: the per-sample work of many stations' voice tables in one wgpu compute dispatch.
//!
//! Device acquisition ([`GpuContext::acquire`]) is separate from rendering, so tests and benches
//! can pass their own device. [`GpuRenderer`] builds everything once (pipeline, explicit
//! bind-group layout, storage and staging buffers sized for `max_stations` blocks of
//! `max_frames`); each call only writes the inputs, dispatches, copies and maps the result back.
//! The shader (`shaders/render.wgsl`) computes what the CPU reference renderer computes; tests
//! hold the two within 1e-5.
//!
//! wgpu locks and may allocate inside its calls, so a GPU render is not real-time safe the way
//! the CPU renderer is: the ring's render-ahead absorbs that, and a readback slower than its
//! deadline is an error the caller answers by rendering on the CPU.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use serde::Serialize;
use wgpu::util::DeviceExt;

use super::batch::{BatchRenderer, Rebuild};
use super::cpu::{fract, CHANNELS};
use super::voice::{VoiceKind, VoiceTable, MAX_VOICES};

/// Frames one workgroup renders (the shader's `@workgroup_size`).
const WORKGROUP_FRAMES: u32 = 64;

/// What went wrong on the GPU path; the `reason` label of `auralis_synthesis_fallbacks_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("only a software adapter ({0}) was found; --backend gpu uses it, auto does not")]
    SoftwareOnly(String),
    #[error("the GPU device could not be opened: {0}")]
    Device(String),
    #[error("the GPU device was lost: {0}")]
    DeviceLost(String),
    #[error("GPU validation error: {0}")]
    Validation(String),
    #[error("GPU readback took longer than {0:?}")]
    Timeout(Duration),
    #[error(
        "{stations} stations x {frames} frames exceed the renderer's {max_stations} x {max_frames}"
    )]
    TooLarge {
        stations: usize,
        frames: usize,
        max_stations: usize,
        max_frames: usize,
    },
    #[error("a block holds more than {MAX_VOICES} voices")]
    TooManyVoices,
    #[error("output slices do not match the blocks")]
    OutputSize,
}

impl GpuError {
    /// Every `reason` label value, indexed by [`reason_index`](Self::reason_index).
    pub const REASONS: [&'static str; 5] = crate::labels::FALLBACK_REASONS;

    /// This error's place in [`REASONS`](Self::REASONS).
    pub fn reason_index(&self) -> usize {
        match self {
            GpuError::NoAdapter(_) | GpuError::SoftwareOnly(_) => 0,
            GpuError::Device(_) | GpuError::DeviceLost(_) => 1,
            GpuError::Validation(_) => 2,
            GpuError::Timeout(_) => 3,
            GpuError::TooLarge { .. } | GpuError::TooManyVoices | GpuError::OutputSize => 4,
        }
    }

    /// The bounded `reason` label for this error.
    pub fn reason(&self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }
}

/// Which adapters [`GpuContext::acquire`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Hardware only (`--backend auto`): a software rasteriser is slower than the CPU renderer.
    HardwareOnly,
    /// Any adapter, software included (`--backend gpu`, tests on lavapipe).
    Any,
}

/// The adapter in use, for logs, `/api/status` and `auralis_gpu_info`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

/// An open GPU device and its queue.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    /// How the adapter was chosen, so a lost device can be replaced the same way.
    pub policy: AdapterPolicy,
}

impl GpuContext {
    /// Opens the best adapter `policy` allows (Vulkan; a high-performance one first).
    ///
    /// # Errors
    /// [`GpuError::NoAdapter`], [`GpuError::SoftwareOnly`] or [`GpuError::Device`].
    pub fn acquire(policy: AdapterPolicy) -> Result<Self, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::VULKAN;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        }))
        .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let summary = AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_ascii_lowercase(),
            device_type: format!("{:?}", info.device_type).to_ascii_lowercase(),
            driver: info.driver.clone(),
        };
        if policy == AdapterPolicy::HardwareOnly && info.device_type == wgpu::DeviceType::Cpu {
            return Err(GpuError::SoftwareOnly(info.name));
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("auralis synthesis"),
            required_features: wgpu::Features::empty(),
            required_limits: limits,
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::Device(e.to_string()))?;
        Ok(Self {
            device,
            queue,
            adapter: summary,
            policy,
        })
    }
}

/// One station's block as the shader reads it (`Block` in render.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GpuBlock {
    start_lo: u32,
    start_hi: u32,
    frames: u32,
    voice_offset: u32,
    voice_count: u32,
    out_offset: u32,
    tremolo_base: f32,
    tremolo_increment: f32,
    tremolo_depth: f32,
    drive: f32,
    master_gain: f32,
    previous_gain: f32,
    ramp_onset: i32,
    ramp_frames: u32,
    _pad: [u32; 2],
}

/// One voice as the shader reads it (`Voice` in render.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GpuVoice {
    kind: u32,
    block: u32,
    onset: i32,
    gate: u32,
    release: u32,
    attack: u32,
    inc_lo: u32,
    inc_hi: u32,
    increment: f32,
    decay_frames: f32,
    sustain: f32,
    gain_left: f32,
    gain_right: f32,
    aux: f32,
    aux_frames: f32,
    seed_lo: u32,
    seed_hi: u32,
    _pad: u32,
}

/// Shader constants (`Params` in render.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct GpuParams {
    segment_slots: u32,
    _pad: [u32; 3],
}

/// Segment slots per voice for blocks of up to `max_frames`: a block spans at most this many
/// onset-aligned 64-frame segments of a voice's age.
fn segment_slots(max_frames: usize) -> u32 {
    (max_frames as u32).div_ceil(WORKGROUP_FRAMES) + 2
}

/// Bytes of one segment record (`Segment` in render.wgsl: four f32).
const SEGMENT_BYTES: u64 = 16;

/// Turns per frame (0 ≤ x < 1) as 0.64 fixed point.
fn fixed_turns(x: f64) -> u64 {
    // 2^64 * x, split so that no f64 rounding beyond x's own precision creeps in.
    let x = fract(x.max(0.0));
    let high = (x * 4_294_967_296.0).floor();
    let low = ((x * 4_294_967_296.0 - high) * 4_294_967_296.0).floor();
    ((high as u64) << 32) | (low as u64).min(u32::MAX as u64)
}

fn gpu_voice(voice: &super::voice::Voice, block: usize) -> GpuVoice {
    let increment = fixed_turns(voice.increment);
    let seed = voice.aux as u64;
    let is_noise = matches!(voice.kind, VoiceKind::Swell | VoiceKind::Hat);
    GpuVoice {
        kind: voice.kind as u32,
        block: block as u32,
        onset: voice.onset.clamp(i32::MIN as i64 / 2, i32::MAX as i64 / 2) as i32,
        gate: voice.gate,
        release: voice.release,
        attack: voice.attack,
        inc_lo: increment as u32,
        inc_hi: (increment >> 32) as u32,
        increment: voice.increment as f32,
        decay_frames: voice.decay_frames,
        sustain: voice.sustain,
        gain_left: voice.gain_left,
        gain_right: voice.gain_right,
        aux: if is_noise { 0.0 } else { voice.aux as f32 },
        aux_frames: voice.aux_frames,
        seed_lo: if is_noise { seed as u32 } else { 0 },
        seed_hi: if is_noise { (seed >> 32) as u32 } else { 0 },
        _pad: 0,
    }
}

fn gpu_block(table: &VoiceTable, voice_offset: usize, out_offset: usize) -> GpuBlock {
    let mix = table.mix;
    GpuBlock {
        start_lo: table.start as u32,
        start_hi: (table.start >> 32) as u32,
        frames: table.frames,
        voice_offset: voice_offset as u32,
        voice_count: table.len() as u32,
        out_offset: out_offset as u32,
        tremolo_base: fract(table.start as f64 * mix.tremolo_increment) as f32,
        tremolo_increment: mix.tremolo_increment as f32,
        tremolo_depth: mix.tremolo_depth,
        drive: mix.drive,
        master_gain: mix.master_gain,
        previous_gain: mix.previous_gain,
        // A ramp that ended long ago or starts far ahead only needs to stay out of reach.
        ramp_onset: mix.ramp_onset.clamp(-(1 << 30), 1 << 30) as i32,
        ramp_frames: mix.ramp_frames,
        _pad: [0; 2],
    }
}

/// The shader's bind-group layout and its two pipelines: segment ends, then the per-sample pass.
fn compile_pipelines(
    device: &wgpu::Device,
) -> (
    wgpu::BindGroupLayout,
    wgpu::ComputePipeline,
    wgpu::ComputePipeline,
) {
    let module = device.create_shader_module(wgpu::include_wgsl!("../../shaders/render.wgsl"));
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("render bindings"),
        entries: &[
            entry(0, storage(true)),
            entry(1, storage(true)),
            entry(2, storage(false)),
            entry(3, storage(false)),
            entry(4, wgpu::BufferBindingType::Uniform),
        ],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("render layout"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline_for = |entry_point: &str| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry_point),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry_point),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let segments = pipeline_for("segments");
    let render = pipeline_for("render");
    (layout, segments, render)
}

/// Every buffer the renderer holds, sized once for `max_stations` blocks of `max_frames`.
struct Buffers {
    blocks: wgpu::Buffer,
    voices: wgpu::Buffer,
    output: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// A slot per voice segment: the largest.
    segments: wgpu::Buffer,
    params: wgpu::Buffer,
}

impl Buffers {
    fn new(device: &wgpu::Device, max_stations: usize, max_frames: usize, slots: u32) -> Self {
        let output_bytes = (max_stations * max_frames * CHANNELS * 4) as u64;
        let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let input = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        Self {
            blocks: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("blocks"),
                contents: bytemuck::cast_slice(&vec![GpuBlock::default(); max_stations]),
                usage: input,
            }),
            voices: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("voices"),
                contents: bytemuck::cast_slice(&vec![
                    GpuVoice::default();
                    max_stations * MAX_VOICES
                ]),
                usage: input,
            }),
            output: buffer(
                "output",
                output_bytes,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            ),
            staging: buffer(
                "staging",
                output_bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            segments: buffer(
                "segments",
                (max_stations * MAX_VOICES) as u64 * u64::from(slots) * SEGMENT_BYTES,
                wgpu::BufferUsages::STORAGE,
            ),
            params: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(&GpuParams {
                    segment_slots: slots,
                    _pad: [0; 3],
                }),
                usage: wgpu::BufferUsages::UNIFORM,
            }),
        }
    }

    /// Bindings 0 to 4 of the shader, in its order.
    fn bind_group(&self, device: &wgpu::Device, layout: &wgpu::BindGroupLayout) -> wgpu::BindGroup {
        let bound = [
            &self.blocks,
            &self.voices,
            &self.output,
            &self.segments,
            &self.params,
        ];
        let entries: Vec<wgpu::BindGroupEntry> = bound
            .iter()
            .enumerate()
            .map(|(binding, buffer)| wgpu::BindGroupEntry {
                binding: binding as u32,
                resource: buffer.as_entire_binding(),
            })
            .collect();
        device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("render bindings"),
            layout,
            entries: &entries,
        })
    }

    fn allocated_bytes(&self) -> u64 {
        [
            &self.blocks,
            &self.voices,
            &self.output,
            &self.staging,
            &self.segments,
            &self.params,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }
}

/// Renders batches of voice tables on a GPU.
pub struct GpuRenderer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    segments_pipeline: wgpu::ComputePipeline,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    segment_slots: u32,
    blocks: wgpu::Buffer,
    voices: wgpu::Buffer,
    output: wgpu::Buffer,
    staging: wgpu::Buffer,
    max_stations: usize,
    max_frames: usize,
    /// Reused for every batch, so rendering allocates nothing of its own.
    block_scratch: Vec<GpuBlock>,
    voice_scratch: Vec<GpuVoice>,
    readback_timeout: Duration,
    adapter: AdapterSummary,
    policy: AdapterPolicy,
    allocated_bytes: u64,
    /// Set by wgpu's device-lost callback.
    lost: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    last_timing: BatchTiming,
}

/// Where the time of the last batch went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchTiming {
    /// Converting and writing the voice tables, encoding and submitting.
    pub submit: Duration,
    /// Waiting for the GPU, mapping the result and copying it out (the readback).
    pub readback: Duration,
}

impl GpuRenderer {
    /// A renderer for up to `max_stations` blocks of up to `max_frames` frames per batch.
    ///
    /// # Errors
    /// [`GpuError::Validation`] when the device refuses the shader or buffers.
    pub fn new(
        context: GpuContext,
        max_stations: usize,
        max_frames: usize,
        readback_timeout: Duration,
    ) -> Result<Self, GpuError> {
        let GpuContext {
            device,
            queue,
            adapter,
            policy,
        } = context;
        let lost = std::sync::Arc::new(std::sync::Mutex::new(None));
        let lost_flag = std::sync::Arc::clone(&lost);
        device.set_device_lost_callback(move |_reason, message| {
            if let Ok(mut lost) = lost_flag.lock() {
                *lost = Some(message);
            }
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (layout, segments_pipeline, pipeline) = compile_pipelines(&device);
        let max_stations = max_stations.max(1);
        let slots = segment_slots(max_frames);
        let buffers = Buffers::new(&device, max_stations, max_frames, slots);
        let bind_group = buffers.bind_group(&device, &layout);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation(error.to_string()));
        }
        let allocated_bytes = buffers.allocated_bytes();
        let Buffers {
            blocks,
            voices,
            output,
            staging,
            ..
        } = buffers;
        Ok(Self {
            device,
            queue,
            segments_pipeline,
            pipeline,
            bind_group,
            segment_slots: slots,
            blocks,
            voices,
            output,
            staging,
            max_stations,
            max_frames,
            block_scratch: Vec::with_capacity(max_stations),
            voice_scratch: Vec::with_capacity(max_stations * MAX_VOICES),
            readback_timeout,
            adapter,
            policy,
            allocated_bytes,
            lost,
            last_timing: BatchTiming::default(),
        })
    }

    /// Where the time of the last successful batch went.
    pub fn last_timing(&self) -> BatchTiming {
        self.last_timing
    }

    /// Whether the device was lost (every render fails until [`rebuild`](Self::rebuild)).
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map_or(true, |lost| lost.is_some())
    }

    /// Opens a new device the way the first was chosen and rebuilds everything on it.
    ///
    /// # Errors
    /// As [`GpuContext::acquire`] and [`GpuRenderer::new`]; the old renderer stays in place.
    pub fn rebuild(&mut self) -> Result<(), GpuError> {
        *self = (self.replacement())()?;
        Ok(())
    }

    /// Builds a renderer like this one on a newly opened device (callable from another thread).
    fn replacement(&self) -> impl Fn() -> Result<Self, GpuError> + Send + Sync + 'static {
        let (policy, max_stations, max_frames) = (self.policy, self.max_stations, self.max_frames);
        let timeout = self.readback_timeout;
        move || {
            let context = GpuContext::acquire(policy)?;
            Self::new(context, max_stations, max_frames, timeout)
        }
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// Bytes of GPU memory this renderer allocated (storage and staging buffers).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated_bytes
    }

    /// Renders every table into its output slice (interleaved stereo, `frames * 2` samples each)
    /// in one submission.
    ///
    /// # Errors
    /// [`GpuError`] for a lost device, a validation error, a readback slower than the timeout,
    /// or a batch larger than the renderer was built for. The outputs are then unspecified.
    pub fn render(
        &mut self,
        tables: &[&VoiceTable],
        outs: &mut [&mut [f32]],
    ) -> Result<(), GpuError> {
        self.render_within(tables, outs, self.readback_timeout)
    }

    /// [`render`](Self::render), waiting at most `deadline` for the readback.
    ///
    /// # Errors
    /// As [`render`](Self::render).
    pub fn render_within(
        &mut self,
        tables: &[&VoiceTable],
        outs: &mut [&mut [f32]],
        deadline: Duration,
    ) -> Result<(), GpuError> {
        if let Some(message) = self.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(GpuError::DeviceLost(message));
        }
        let longest = self.check_batch(tables, outs)?;
        if tables.is_empty() {
            return Ok(());
        }
        let submit_started = Instant::now();
        // Validation errors of the writes and the submission are caught here, not by wgpu's
        // default handler (which panics).
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let staged = self.stage(tables, outs);
        let submission = staged.map(|out_bytes| {
            (
                self.submit(tables.len() as u32, longest, out_bytes),
                out_bytes,
            )
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Validation(error.to_string()));
        }
        let (submission, out_bytes) = submission?;
        let started = Instant::now();
        self.read_back(submission, out_bytes, outs, deadline)?;
        self.last_timing = BatchTiming {
            submit: started.saturating_duration_since(submit_started),
            readback: started.elapsed(),
        };
        Ok(())
    }

    /// The longest block of a batch this renderer can take, or why it cannot.
    fn check_batch(&self, tables: &[&VoiceTable], outs: &[&mut [f32]]) -> Result<u32, GpuError> {
        if tables.len() != outs.len() {
            return Err(GpuError::OutputSize);
        }
        let longest = tables.iter().map(|t| t.frames as usize).max().unwrap_or(0);
        if tables.len() > self.max_stations || longest > self.max_frames {
            return Err(GpuError::TooLarge {
                stations: tables.len(),
                frames: longest,
                max_stations: self.max_stations,
                max_frames: self.max_frames,
            });
        }
        Ok(longest as u32)
    }

    /// Converts the tables into the shader's blocks and voices (in the reused scratch vectors)
    /// and writes them to the GPU; returns the bytes of output they produce.
    fn stage(&mut self, tables: &[&VoiceTable], outs: &[&mut [f32]]) -> Result<u64, GpuError> {
        self.block_scratch.clear();
        self.voice_scratch.clear();
        let mut out_offset = 0;
        for (block, (table, out)) in tables.iter().zip(outs.iter()).enumerate() {
            if out.len() != table.frames as usize * CHANNELS {
                return Err(GpuError::OutputSize);
            }
            if table.len() > MAX_VOICES {
                return Err(GpuError::TooManyVoices);
            }
            self.block_scratch
                .push(gpu_block(table, self.voice_scratch.len(), out_offset));
            self.voice_scratch
                .extend(table.voices().iter().map(|v| gpu_voice(v, block)));
            out_offset += out.len();
        }
        self.queue
            .write_buffer(&self.blocks, 0, bytemuck::cast_slice(&self.block_scratch));
        if !self.voice_scratch.is_empty() {
            self.queue
                .write_buffer(&self.voices, 0, bytemuck::cast_slice(&self.voice_scratch));
        }
        Ok((out_offset * 4) as u64)
    }

    /// Encodes both passes and the copy into the staging buffer, and submits them.
    fn submit(&self, blocks: u32, longest: u32, out_bytes: u64) -> wgpu::SubmissionIndex {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("render"),
            });
        if !self.voice_scratch.is_empty() {
            // Segment ends first (their own pass, so the render pass sees every write).
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("segments"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.segments_pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(
                self.segment_slots.div_ceil(WORKGROUP_FRAMES),
                self.voice_scratch.len() as u32,
                1,
            );
        }
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("render"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &self.bind_group, &[]);
            pass.dispatch_workgroups(longest.div_ceil(WORKGROUP_FRAMES), blocks, 1);
        }
        encoder.copy_buffer_to_buffer(&self.output, 0, &self.staging, 0, out_bytes);
        self.queue.submit([encoder.finish()])
    }

    /// Waits at most `deadline` for the batch, then copies each block out of the staging buffer.
    fn read_back(
        &mut self,
        submission: wgpu::SubmissionIndex,
        out_bytes: u64,
        outs: &mut [&mut [f32]],
        deadline: Duration,
    ) -> Result<(), GpuError> {
        let slice = self.staging.slice(..out_bytes);
        let (mapped_tx, mapped_rx) = mpsc::sync_channel(1);
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = mapped_tx.send(result);
        });
        let started = Instant::now();
        let polled = self
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(deadline),
            })
            .map_err(|e| match e {
                wgpu::PollError::Timeout => GpuError::Timeout(deadline),
                other => GpuError::DeviceLost(other.to_string()),
            });
        let remaining = deadline.saturating_sub(started.elapsed());
        let mapped = polled.and_then(|_| match mapped_rx.recv_timeout(remaining) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(GpuError::DeviceLost(e.to_string())),
            Err(_) => Err(GpuError::Timeout(deadline)),
        });
        if let Err(error) = mapped {
            // Abort the pending map so the next batch can map the staging buffer again; the
            // queue runs the late work before anything submitted after it.
            self.staging.unmap();
            return Err(error);
        }
        let copied = slice
            .get_mapped_range()
            .map(|data| {
                let samples: &[f32] = bytemuck::cast_slice(&data);
                let mut offset = 0;
                for out in outs.iter_mut() {
                    out.copy_from_slice(&samples[offset..offset + out.len()]);
                    offset += out.len();
                }
            })
            .map_err(|e| GpuError::DeviceLost(e.to_string()));
        // Unmapped whatever happened: a buffer left mapped fails every later batch.
        self.staging.unmap();
        copied
    }
}

impl BatchRenderer for GpuRenderer {
    fn render(
        &mut self,
        tables: &[&VoiceTable],
        outs: &mut [&mut [f32]],
        deadline: Duration,
    ) -> Result<(), GpuError> {
        self.render_within(tables, outs, deadline)
    }

    fn is_lost(&self) -> bool {
        GpuRenderer::is_lost(self)
    }

    fn adapter(&self) -> &AdapterSummary {
        GpuRenderer::adapter(self)
    }

    fn allocated_bytes(&self) -> u64 {
        GpuRenderer::allocated_bytes(self)
    }

    fn rebuilder(&self) -> Rebuild {
        let build = self.replacement();
        std::sync::Arc::new(move || {
            build().map(|renderer| Box::new(renderer) as Box<dyn BatchRenderer>)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_turns_keep_64_bits_of_the_increment() {
        let x = 440.0 / 48_000.0;
        let fixed = fixed_turns(x);
        let back = (fixed >> 11) as f64 / (1u64 << 53) as f64;
        assert!((back - x).abs() < 1e-15, "{back} vs {x}");
        // age * increment mod 1, from the fixed point, as the shader computes it.
        let age: u32 = 3_000_000;
        let (lo, hi) = (fixed as u32, (fixed >> 32) as u32);
        let turns = (((lo as u64 * age as u64) >> 32) as u32).wrapping_add(hi.wrapping_mul(age));
        let expected = fract(age as f64 * x);
        assert!((turns as f64 / 4_294_967_296.0 - expected).abs() < 1e-8);
    }
}
