//! The active stage of one session: RDP frames in, events out, input back.
//!
//! Sans-IO: the bounce worker reads frames from the socket and writes back what
//! this returns.

use ironrdp_connector::connection_activation::{ConnectionActivationSequence, ConnectionActivationState};
use ironrdp_connector::{ConnectionResult, Sequence as _};
use ironrdp_core::WriteBuf;
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_input::{MouseButton, MousePosition, Operation, Scancode, WheelRotations};
use ironrdp_pdu::Action;
use ironrdp_session::image::DecodedImage;
use ironrdp_session::{ActiveStage, ActiveStageBuilder, ActiveStageOutput, GracefulDisconnectReason};
use rebond_policy::Input;
use rebond_wire::{Button, ErrorCode};

/// What the worker must act on after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Pixels changed in this rectangle (exclusive right and bottom).
    Damage { left: u16, top: u16, right: u16, bottom: u16 },
    /// The desktop has a new size; the framebuffer was reset.
    DesktopResized { width: u16, height: u16 },
    /// New pointer shape: RGBA (straight alpha), with hotspot.
    PointerShape { width: u16, height: u16, hotspot_x: u16, hotspot_y: u16, rgba: Vec<u8> },
    PointerHidden,
    PointerDefault,
    /// The workstation ended the session.
    Ended { code: ErrorCode, reason: String },
    /// The workstation played sound (the speaker is allowed).
    Speaker(crate::SpeakerSound),
}

pub struct Session {
    stage: ActiveStage,
    image: DecodedImage,
    activation: ironrdp_connector::connection_activation::ConnectionActivationFactory,
    reactivation: Option<ConnectionActivationSequence>,
    input: ironrdp_input::Database,
    speaker: Option<crate::SpeakerQueue>,
}

/// Frames to write back to the workstation, and events for the worker.
#[derive(Default)]
pub struct Processed {
    pub responses: Vec<Vec<u8>>,
    pub events: Vec<SessionEvent>,
}

impl Session {
    /// The active stage after `connect`; `speaker` is where the workstation's sound
    /// arrives when the speaker is allowed ([`crate::Connected::speaker`]).
    pub fn new(result: ConnectionResult, speaker: Option<crate::SpeakerQueue>) -> Self {
        let image = DecodedImage::new(PixelFormat::RgbA32, result.desktop_size.width, result.desktop_size.height);
        let stage = ActiveStageBuilder {
            static_channels: result.static_channels,
            user_channel_id: result.user_channel_id,
            io_channel_id: result.io_channel_id,
            message_channel_id: result.message_channel_id,
            share_id: result.share_id,
            compression_type: result.compression_type,
            enable_server_pointer: result.enable_server_pointer,
            pointer_software_rendering: result.pointer_software_rendering,
        }
        .build();
        Self {
            stage,
            image,
            activation: result.activation_factory,
            reactivation: None,
            input: ironrdp_input::Database::new(),
            speaker,
        }
    }

    pub fn width(&self) -> u16 {
        self.image.width()
    }

    pub fn height(&self) -> u16 {
        self.image.height()
    }

    /// The framebuffer, RGBA, `width * height * 4` bytes.
    pub fn pixels(&self) -> &[u8] {
        self.image.data()
    }

    /// Processes one frame read from the workstation.
    pub fn process(&mut self, action: Action, frame: &[u8]) -> Result<Processed, String> {
        if self.reactivation.is_some() {
            return self.reactivate_step(frame);
        }
        let outputs = self.stage.process(&mut self.image, action, frame, None).map_err(|e| e.report().to_string())?;
        let mut out = Processed::default();
        for output in outputs {
            match output {
                ActiveStageOutput::ResponseFrame(f) if !f.is_empty() => out.responses.push(f),
                ActiveStageOutput::GraphicsUpdate(r) => out.events.push(SessionEvent::Damage {
                    left: r.left,
                    top: r.top,
                    right: r.right.saturating_add(1),
                    bottom: r.bottom.saturating_add(1),
                }),
                ActiveStageOutput::PointerDefault => out.events.push(SessionEvent::PointerDefault),
                ActiveStageOutput::PointerHidden => out.events.push(SessionEvent::PointerHidden),
                ActiveStageOutput::PointerBitmap(p) => out.events.push(SessionEvent::PointerShape {
                    width: p.width,
                    height: p.height,
                    hotspot_x: p.hotspot_x,
                    hotspot_y: p.hotspot_y,
                    rgba: p.bitmap_data.clone(),
                }),
                ActiveStageOutput::Terminate(reason) => {
                    out.events.push(SessionEvent::Ended { code: end_code(&reason), reason: reason.to_string() })
                }
                ActiveStageOutput::DeactivateAll => {
                    self.reactivation = Some(self.activation.create());
                    self.drive_reactivation(None, &mut out)?;
                }
                _ => {}
            }
        }
        if let Some(queue) = &self.speaker {
            if let Ok(mut q) = queue.lock() {
                out.events.extend(q.drain(..).map(SessionEvent::Speaker));
            }
        }
        Ok(out)
    }

    /// Frames carrying 48 kHz mono samples to the workstation's microphone channel;
    /// none while the channel is not open (not allowed, or the workstation is not
    /// recording).
    pub fn microphone(&mut self, samples: &[i16]) -> Result<Vec<Vec<u8>>, String> {
        if self.reactivation.is_some() {
            return Ok(Vec::new());
        }
        let Some(mut channel) = self.stage.get_dvc_mut::<crate::sound::MicrophoneChannel>() else {
            return Ok(Vec::new());
        };
        let messages = channel.processor_mut().send(samples);
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let id = channel.channel_id();
        let svc = ironrdp_dvc::encode_dvc_messages(id, messages, ironrdp_svc::ChannelFlags::empty())
            .map_err(|e| e.to_string())?;
        let frame = self.stage.encode_dvc_messages(svc).map_err(|e| e.report().to_string())?;
        Ok(vec![frame])
    }

    fn reactivate_step(&mut self, frame: &[u8]) -> Result<Processed, String> {
        let mut out = Processed::default();
        self.drive_reactivation(Some(frame), &mut out)?;
        Ok(out)
    }

    /// Runs the Deactivation-Reactivation Sequence ([MS-RDPBCGR] 1.3.1.3) as frames arrive.
    fn drive_reactivation(&mut self, mut frame: Option<&[u8]>, out: &mut Processed) -> Result<(), String> {
        let Some(seq) = self.reactivation.as_mut() else { return Ok(()) };
        loop {
            let mut buf = WriteBuf::new();
            let written = match (seq.next_pdu_hint().is_some(), frame.take()) {
                (true, Some(f)) => seq.step(f, None, &mut buf),
                (true, None) => return Ok(()), // wait for the next frame
                (false, _) => seq.step_no_input(&mut buf),
            }
            .map_err(|e| e.report().to_string())?;
            if let Some(n) = written.size() {
                out.responses.push(buf[..n].to_vec());
            }
            if let ConnectionActivationState::Finalized {
                desktop_size,
                share_id,
                enable_server_pointer,
                pointer_software_rendering,
                static_channel_chunk_size,
                ..
            } = seq.connection_activation_state()
            {
                let (io, user) = (seq.io_channel_id(), seq.user_channel_id());
                self.reactivation = None;
                if !self.stage.reactivate(
                    io,
                    user,
                    share_id,
                    enable_server_pointer,
                    pointer_software_rendering,
                    static_channel_chunk_size,
                ) {
                    return Err("invalid static channel chunk size during reactivation".into());
                }
                self.image = DecodedImage::new(PixelFormat::RgbA32, desktop_size.width, desktop_size.height);
                out.events.push(SessionEvent::DesktopResized { width: desktop_size.width, height: desktop_size.height });
                return Ok(());
            }
            if frame.is_none() && seq.next_pdu_hint().is_some() {
                return Ok(());
            }
        }
    }

    /// Encodes checked input events for the workstation.
    pub fn input(&mut self, inputs: &[Input]) -> Result<Vec<Vec<u8>>, String> {
        let ops = inputs.iter().map(|i| match *i {
            Input::Key { scancode, extended, down } => {
                let sc = Scancode::from_u8(extended, scancode);
                if down {
                    Operation::KeyPressed(sc)
                } else {
                    Operation::KeyReleased(sc)
                }
            }
            Input::PointerMove { x, y } => Operation::MouseMove(MousePosition { x, y }),
            Input::PointerButton { button, down, .. } => {
                let b = match button {
                    Button::Left => MouseButton::Left,
                    Button::Middle => MouseButton::Middle,
                    Button::Right => MouseButton::Right,
                    Button::Back => MouseButton::X1,
                    Button::Forward => MouseButton::X2,
                };
                if down {
                    Operation::MouseButtonPressed(b)
                } else {
                    Operation::MouseButtonReleased(b)
                }
            }
            Input::Wheel { delta, horizontal, .. } => {
                Operation::WheelRotations(WheelRotations { is_vertical: !horizontal, rotation_units: delta })
            }
        });
        // Buttons and wheel act where the pointer is: move there first.
        let mut all = Vec::new();
        for (input, op) in inputs.iter().zip(ops) {
            if let Input::PointerButton { x, y, .. } | Input::Wheel { x, y, .. } = *input {
                all.push(Operation::MouseMove(MousePosition { x, y }));
            }
            all.push(op);
        }
        let events = self.input.apply(all);
        self.encode_input(&events)
    }

    /// Tells the workstation that no lock key is on ([MS-RDPBCGR] 2.2.8.1.2.2.5),
    /// as clients do when they gain focus; some servers wait for it before input.
    pub fn synchronize(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let event = ironrdp_input::synchronize_event(false, false, false, false);
        self.encode_input(&[event])
    }

    /// Releases every key and button still held (the page went away).
    pub fn release_all(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let events = self.input.release_all();
        self.encode_input(&events)
    }

    fn encode_input(
        &mut self,
        events: &[ironrdp_pdu::input::fast_path::FastPathInputEvent],
    ) -> Result<Vec<Vec<u8>>, String> {
        if self.reactivation.is_some() || events.is_empty() {
            return Ok(Vec::new());
        }
        let outputs = self.stage.process_fastpath_input(&mut self.image, events).map_err(|e| e.report().to_string())?;
        Ok(outputs
            .into_iter()
            .filter_map(|o| match o {
                ActiveStageOutput::ResponseFrame(f) if !f.is_empty() => Some(f),
                _ => None,
            })
            .collect())
    }

    /// Asks the workstation for a new desktop size over display control.
    /// `None` when the workstation does not support it (the page then scales).
    pub fn resize(&mut self, width: u16, height: u16) -> Option<Result<Vec<u8>, String>> {
        // [MS-RDPEDISP] 2.2.2.2.1: the width must be even.
        let width = u32::from(width) & !1;
        self.stage
            .encode_resize(width, u32::from(height), None, None)
            .map(|r| r.map_err(|e| e.report().to_string()))
    }

    /// Frames that end the session politely.
    pub fn shutdown(&self) -> Vec<Vec<u8>> {
        self.stage
            .graceful_shutdown()
            .map(|outs| {
                outs.into_iter()
                    .filter_map(|o| match o {
                        ActiveStageOutput::ResponseFrame(f) => Some(f),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn end_code(reason: &GracefulDisconnectReason) -> ErrorCode {
    match reason {
        GracefulDisconnectReason::Other(text) if text.to_ascii_lowercase().contains("another user connected") => {
            ErrorCode::SessionTakenOver
        }
        _ => ErrorCode::SessionEndedAtWorkstation,
    }
}
