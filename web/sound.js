// Sound for the session, as the person's policy allows (docs/protocol.md, "Sound"):
// - the workstation's sound (Opus packets) is decoded with WebCodecs and played
//   through a small adaptive jitter buffer;
// - the person's microphone goes up as Opus, only after they click the microphone
//   button (the browser then asks for permission), with echo cancellation and noise
//   suppression on.
// Both ways: mono, 48 kHz, one packet per 20 ms.

const RATE = 48000;
const FRAME = 960;
const MICROPHONE = 0x89;
const MAX_MICROPHONE_PACKET = 400;
// Jitter buffer: how far ahead of the clock sound is scheduled, in seconds.
const TARGET_START = 0.04, TARGET_MIN = 0.03, TARGET_MAX = 0.3, TARGET_STEP = 0.02;
// More than this beyond the target and a block is dropped to catch up at once.
const EXCESS = 0.12;
// If the buffer never went below target + this for half a second (a burst left it too
// full), the excess is dropped, 20 ms blocks at a time: the delay comes back to the target.
const SLACK = 0.015;
// Levels (linear amplitude) where a sound starts (-30 dBFS) and silence is back (-50 dBFS).
const LOUD = 0.0316, QUIET = 0.00316;
const KEEP = 3000;

export function soundSupported() {
  return typeof AudioContext === 'function' && typeof AudioDecoder === 'function'
    && typeof AudioEncoder === 'function' && typeof AudioWorkletNode === 'function';
}

function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i += 1) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

function keep(list, value) {
  list.push(value);
  if (list.length > KEEP) list.shift();
}

export class Sound {
  // `send(arrayBuffer)` sends an uplink message; `t(key)` translates; `focus()` gives the
  // keyboard back to the desktop after a click on a button.
  constructor({ send, t, focus }) {
    this.send = send;
    this.t = t;
    this.focus = focus;
    this.ctx = null;
    this.output = null; // the speaker's gain node (mute), before the destination
    this.decoder = null;
    this.arrivals = [];
    this.timestamp = 0;
    this.next = 0;
    this.target = TARGET_START;
    this.sinceUnderrun = 0;
    this.lowest = Infinity; // the least buffered over the current half second
    this.counted = 0;
    this.skip = 0; // blocks still to drop
    this.speakerLoud = false;
    this.speakerMuted = false;
    this.microphone = null; // { stream, source, tap, encoder }
    this.microphoneMuted = false;
    this.microphoneLoud = false;
    this.microphoneBitrate = 24000;
    // Figures, for the person's IT department and for the tests: read them with
    // `window.rebondSound.stats` in the browser's console.
    this.stats = {
      packets: 0, speakerBytes: 0, underruns: 0, restarts: 0, dropped: 0, trimmed: 0, decodeErrors: 0,
      decodeMs: [], bufferMs: [], outputLatencyMs: 0, speakerOnsets: [], microphonePackets: 0, microphoneBytes: 0, microphoneOnsets: [],
    };
    this.speakerButton = document.getElementById('speaker-button');
    this.microphoneButton = document.getElementById('microphone-button');
    this.level = document.getElementById('microphone-level');
    this.message = document.getElementById('sound-message');
    this.speakerButton.addEventListener('click', () => { this.toggleSpeaker(); this.focus(); });
    this.microphoneButton.addEventListener('click', () => { this.toggleMicrophone().finally(() => this.focus()); });
    this.labels();
  }

  // What the policy allows, from the gateway when the page attaches.
  settings(speaker, microphone, microphoneBitrate) {
    this.microphoneBitrate = microphoneBitrate;
    const supported = soundSupported();
    this.speakerButton.classList.toggle('hidden', !speaker || !supported);
    this.microphoneButton.classList.toggle('hidden', !microphone || !supported);
    document.getElementById('sound').classList.toggle('hidden', !speaker && !microphone);
    if ((speaker || microphone) && !supported) this.say('sound_unsupported');
    if (!microphone) this.stopMicrophone();
  }

  // The page may have been opened without a click (a reload): browsers keep sound
  // suspended until the person interacts, so every key and click tries again.
  resume() {
    if (this.ctx && this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
  }

  context() {
    if (!this.ctx) {
      this.ctx = new AudioContext({ sampleRate: RATE, latencyHint: 'interactive' });
      this.output = this.ctx.createGain();
      this.output.gain.value = this.speakerMuted ? 0 : 1;
      this.output.connect(this.ctx.destination);
    }
    this.resume();
    return this.ctx;
  }

  // Milliseconds since the epoch at which audio-clock time `time` leaves the page's audio
  // graph for the device (the device adds `ctx.outputLatency`, reported apart).
  epochOf(time) {
    return performance.timeOrigin + performance.now() + (time - this.ctx.currentTime) * 1000;
  }

  // One packet of the workstation's sound.
  speaker(fresh, packet) {
    if (!soundSupported()) return;
    this.stats.packets += 1;
    this.stats.speakerBytes += 2 + packet.length;
    if (!this.decoder) {
      this.context();
      this.decoder = new AudioDecoder({
        output: (data) => this.play(data),
        error: () => { this.stats.decodeErrors += 1; this.decoder = null; },
      });
      this.decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 1 });
    }
    this.arrivals.push({ fresh, arrival: performance.now() });
    this.decoder.decode(new EncodedAudioChunk({ type: 'key', timestamp: this.timestamp, data: packet }));
    this.timestamp += 20000;
  }

  play(data) {
    const { fresh, arrival } = this.arrivals.shift() || { fresh: false, arrival: performance.now() };
    const n = data.numberOfFrames;
    const samples = new Float32Array(n);
    data.copyTo(samples, { planeIndex: 0, format: 'f32-planar' });
    const rate = data.sampleRate;
    data.close();
    const now = this.ctx.currentTime;
    let start = this.next;
    if (fresh || start < now) {
      if (fresh) {
        this.stats.restarts += 1;
      } else if (this.next > 0) {
        // The buffer ran dry: the network or the workstation is late. Wait longer from now on.
        this.stats.underruns += 1;
        this.target = Math.min(TARGET_MAX, this.target + TARGET_STEP);
        this.sinceUnderrun = 0;
      }
      start = now + this.target;
    } else if (start - now > this.target + EXCESS) {
      this.stats.dropped += 1; // too much queued (a burst, or clock drift): catch up
      return;
    } else if (this.skip > 0) {
      this.skip -= 1;
      this.stats.trimmed += 1;
      return;
    } else {
      this.lowest = Math.min(this.lowest, start - now);
      this.counted += 1;
      if (this.counted >= 25) {
        // Half a second never below target + slack: drop the excess, 20 ms at a time.
        if (this.lowest > this.target + SLACK) this.skip = Math.ceil((this.lowest - this.target - SLACK) / 0.02);
        this.lowest = Infinity;
        this.counted = 0;
      }
    }
    this.sinceUnderrun += 1;
    if (this.sinceUnderrun > 500) { // 10 s without a gap: try a shorter delay
      this.sinceUnderrun = 0;
      this.target = Math.max(TARGET_MIN, this.target - 0.01);
    }
    const buffer = this.ctx.createBuffer(1, n, rate);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    source.start(start);
    this.next = start + buffer.duration;
    keep(this.stats.decodeMs, performance.now() - arrival);
    keep(this.stats.bufferMs, (start - now) * 1000);
    this.stats.outputLatencyMs = (this.ctx.outputLatency || 0) * 1000;
    this.speakerLoud = this.onset(samples, rate, this.speakerLoud, this.stats.speakerOnsets,
      (i) => this.epochOf(start + i / rate));
  }

  // Notes when a sound starts after silence (epoch milliseconds, `when(i)` of sample i):
  // latency figures.
  onset(samples, rate, loud, onsets, when) {
    const level = rms(samples);
    if (!loud && level > LOUD) {
      const i = samples.findIndex((s) => Math.abs(s) > LOUD);
      keep(onsets, when(Math.max(0, i)));
      return true;
    }
    return loud && level > QUIET;
  }

  toggleSpeaker() {
    this.speakerMuted = !this.speakerMuted;
    if (this.output) this.output.gain.value = this.speakerMuted ? 0 : 1;
    this.context();
    this.labels();
  }

  async toggleMicrophone() {
    if (this.microphone) {
      this.microphoneMuted = !this.microphoneMuted;
      this.microphone.stream.getAudioTracks().forEach((track) => { track.enabled = !this.microphoneMuted; });
      this.labels();
      return;
    }
    const ctx = this.context();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (e) {
      this.say('microphone_denied');
      return;
    }
    await ctx.audioWorklet.addModule('/sound-worklet.js');
    const source = ctx.createMediaStreamSource(stream);
    const tap = new AudioWorkletNode(ctx, 'rebond-microphone', { numberOfInputs: 1, numberOfOutputs: 0 });
    const encoder = new AudioEncoder({
      output: (chunk) => {
        if (chunk.byteLength > MAX_MICROPHONE_PACKET) return;
        const bytes = new Uint8Array(1 + chunk.byteLength);
        bytes[0] = MICROPHONE;
        chunk.copyTo(bytes.subarray(1));
        this.stats.microphonePackets += 1;
        this.stats.microphoneBytes += bytes.length;
        this.send(bytes.buffer);
      },
      error: () => this.say('sound_unsupported'),
    });
    encoder.configure({
      codec: 'opus', sampleRate: RATE, numberOfChannels: 1, bitrate: this.microphoneBitrate,
      opus: { frameDuration: 20000, application: 'voip', signal: 'voice' },
    });
    tap.port.onmessage = (ev) => this.captured(ev.data.samples, ev.data.time);
    source.connect(tap);
    this.microphone = { stream, source, tap, encoder };
    this.microphoneMuted = false;
    this.say(null);
    this.labels();
  }

  captured(samples, time) {
    // The block's last sample has just been captured: sample i, (960 - i) samples before.
    const arrived = performance.timeOrigin + performance.now();
    const level = rms(samples);
    this.level.value = this.microphoneMuted ? 0 : Math.min(1, level * 4);
    if (this.microphoneMuted || !this.microphone) return;
    this.microphoneLoud = this.onset(samples, RATE, this.microphoneLoud, this.stats.microphoneOnsets,
      (i) => arrived - ((FRAME - i) / RATE) * 1000);
    const data = new AudioData({
      format: 'f32-planar', sampleRate: RATE, numberOfFrames: FRAME, numberOfChannels: 1,
      timestamp: Math.round(time * 1e6), data: samples,
    });
    this.microphone.encoder.encode(data);
    data.close();
  }

  stopMicrophone() {
    if (!this.microphone) return;
    this.microphone.stream.getTracks().forEach((track) => track.stop());
    this.microphone.source.disconnect();
    this.microphone.tap.port.onmessage = null;
    if (this.microphone.encoder.state !== 'closed') this.microphone.encoder.close();
    this.microphone = null;
    this.level.value = 0;
    this.labels();
  }

  // The session is over: the microphone is released at once.
  stop() {
    this.stopMicrophone();
    if (this.decoder && this.decoder.state !== 'closed') this.decoder.close();
    this.decoder = null;
    this.next = 0;
  }

  labels() {
    const speaker = this.t(this.speakerMuted ? 'speaker_unmute' : 'speaker_mute');
    this.speakerButton.title = speaker;
    this.speakerButton.setAttribute('aria-label', speaker);
    this.speakerButton.setAttribute('aria-pressed', String(!this.speakerMuted));
    const on = this.microphone && !this.microphoneMuted;
    const mic = this.t(!this.microphone ? 'microphone_start' : (on ? 'microphone_mute' : 'microphone_unmute'));
    this.microphoneButton.title = mic;
    this.microphoneButton.setAttribute('aria-label', mic);
    this.microphoneButton.setAttribute('aria-pressed', String(Boolean(on)));
    this.level.classList.toggle('hidden', !this.microphone);
  }

  say(key) {
    this.message.textContent = key ? this.t(key) : '';
  }
}
