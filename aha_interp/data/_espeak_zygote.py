"""espeak-ng worker, run as a script (no package imports, so forking it is cheap).

espeak-ng keeps synthesis state (glottal phase, flutter index) from one utterance to the next, so
the same request gave slightly different samples depending on what came before. This process
initialises the library once and never synthesises itself: each request is served by a forked child
that starts from that pristine state. Protocol: argv = library path, data folder; then it writes the
sample rate (int32), and for each JSON request line [text, voice, rate, pitch, range, volume] on
stdin, an int32 byte count (-1 on failure) and the int16 samples on stdout.
"""

import ctypes
import json
import os
import signal
import struct
import sys


def main() -> None:
    # the parent owns this process's lifetime (it closes stdin); a Ctrl-C or a Jupyter kernel shutdown reaching
    # the whole process group must not print a traceback from here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lib = ctypes.cdll.LoadLibrary(sys.argv[1])
    rate = lib.espeak_Initialize(2, 0, sys.argv[2].encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    chunks = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def collect(wav, n, events):
        if n > 0:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    callback = callback_type(collect)
    lib.espeak_SetSynthCallback(callback)
    out = sys.stdout.buffer
    out.write(struct.pack("<i", rate))
    out.flush()
    for line in sys.stdin.buffer:
        if not line.endswith(b"\n"):  # a request cut short: the parent died mid-write; nothing to answer
            break
        text, voice, speed, pitch, pitch_range, volume = json.loads(line)
        pid = os.fork()
        if pid == 0:
            data, ok = b"", False
            try:
                if lib.espeak_SetVoiceByName(voice.encode()) == 0:
                    for param, value in ((1, speed), (3, pitch), (4, pitch_range), (2, volume)):
                        lib.espeak_SetParameter(param, int(value), 0)
                    lib.espeak_ng_SetRandSeed(ctypes.c_long(1))  # breath/roughness noise
                    raw = text.encode() + b"\0"
                    lib.espeak_Synth(raw, len(raw), 0, 1, 0, 0, None, None)
                    lib.espeak_Synchronize()
                    data, ok = b"".join(chunks), True
                out.write(struct.pack("<i", len(data) if ok else -1) + data)
                out.flush()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
