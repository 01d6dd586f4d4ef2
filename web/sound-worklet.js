// The microphone's samples, from the audio thread to the page, 20 ms at a time
// (960 samples at 48 kHz), with the audio clock time of their first sample.
class MicrophoneTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(960);
    this.filled = 0;
    this.start = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    for (let i = 0; i < input.length; i += 1) {
      if (this.filled === 0) this.start = currentTime + i / sampleRate;
      this.block[this.filled] = input[i];
      this.filled += 1;
      if (this.filled === this.block.length) {
        this.port.postMessage({ samples: this.block, time: this.start }, [this.block.buffer]);
        this.block = new Float32Array(960);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor('rebond-microphone', MicrophoneTap);
