"""What the hall hears: announcement texts per language, their audio, and its players.

* :mod:`voice.reading` — how tickets and windows are read aloud (pure);
* :mod:`voice.templates` — the ``[voice]`` policy: what is said, in which languages (pure);
* :mod:`voice.render` — text to WAV through pyttsx3 / espeak-ng off the trio thread, cached;
* :mod:`voice.announcer` — the server's side: render when an ``announce`` is built, serve by key;
* :mod:`voice.http` — ``GET /audio/{key}.wav`` as Starlette routes;
* :mod:`voice.queue` — a speaker group's play order (pure);
* :mod:`voice.chime` — the two-tone chime.
"""
