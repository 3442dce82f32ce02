"""The chime played before an announcement: two bell-like tones, synthesised with the stdlib.

A falling major third (G5 784 Hz, then E5 659 Hz), each tone with a short attack and an
exponential decay, in the format espeak-ng renders speech in (22,050 Hz, mono, 16-bit), so
a player can concatenate chime and speech. The file is shipped as ``displays/chime.wav``
(served at ``/static/chime.wav``); ``python -m voice.chime PATH`` writes it again, and a
test checks the shipped file is exactly what :func:`chime_wav` makes.
"""

from __future__ import annotations

import io
import math
import struct
import sys
import wave
from typing import Final

SAMPLE_RATE: Final = 22_050  # Hz, as espeak-ng renders
TONES: Final = ((784.0, 0.45), (659.25, 0.65))  # (Hz, seconds): G5 then E5
ATTACK_S: Final = 0.01
DECAY_PER_S: Final = 5.0  # amplitude falls by e every 0.2 s
PEAK: Final = 0.5  # of full scale


def chime_samples() -> list[int]:
    """The chime as 16-bit samples."""
    samples: list[int] = []
    for frequency, seconds in TONES:
        for i in range(int(seconds * SAMPLE_RATE)):
            t = i / SAMPLE_RATE
            envelope = min(1.0, t / ATTACK_S) * math.exp(-DECAY_PER_S * t)
            tone = math.sin(2 * math.pi * frequency * t) + 0.3 * math.sin(4 * math.pi * frequency * t)
            samples.append(round(32767 * PEAK * envelope * tone / 1.3))
    return samples


def chime_wav() -> bytes:
    """The chime as a WAV file (22,050 Hz, mono, 16-bit)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        samples = chime_samples()
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    return buffer.getvalue()


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "displays/chime.wav"
    with open(target, "wb") as file:
        file.write(chime_wav())
    print(f"wrote {target}")
