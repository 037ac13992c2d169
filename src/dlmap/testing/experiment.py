"""Small fakes for trying the experiment without real enhancers: a pairs file over synthetic
images, a served instance on loopback, and a valid answer payload (used by the tests)."""

from __future__ import annotations

import csv
import itertools
import threading
from pathlib import Path

import numpy as np
from PIL import Image


def write_fake_pairs(
    folder: Path, conditions: list[str], k: int, size: tuple[int, int] = (48, 32)
) -> Path:
    """``folder/images/COND/imgN.png`` (distinct noise images of ``size`` = width, height) and
    ``folder/PAIRS.csv`` with the first ``k`` images for every pair of conditions, file paths
    relative to ``folder/images``. Returns the pairs file."""
    images = Path(folder) / "images"
    rng = np.random.default_rng(0)
    for condition in conditions:
        (images / condition).mkdir(parents=True, exist_ok=True)
        for n in range(k):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / condition / f"img{n}.png")
    pairs = Path(folder) / "PAIRS.csv"
    with open(pairs, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            [
                "enhancer_i",
                "enhancer_j",
                "image",
                "order",
                "d1",
                "d2",
                "objective",
                "file_i",
                "file_j",
            ]
        )
        for first, second in itertools.combinations(conditions, 2):
            for n in range(k):
                name = f"img{n}"
                writer.writerow(
                    [
                        first,
                        second,
                        name,
                        n + 1,
                        0.5,
                        "",
                        0.5,
                        f"{first}/{name}.png",
                        f"{second}/{name}.png",
                    ]
                )
    return pairs


def answer_payload(trial: int, chosen: str = "left", **changes) -> dict:
    """A well-formed answer to ``trial``; ``changes`` override fields."""
    payload = {
        "trial": trial,
        "chosen": chosen,
        "input": "key",
        "response_ms": 812.5,
        "shown_at": "2024-01-01T10:00:00.000Z",
        "answered_at": "2024-01-01T10:00:00.812Z",
        "screen_width": 1920,
        "screen_height": 1080,
        "device_pixel_ratio": 1.0,
        "zoom": 1.0,
        "window_width": 1800,
        "window_height": 1000,
    }
    payload.update(changes)
    return payload


class ServedStudy:
    """The study's app served by werkzeug on 127.0.0.1 (a free port) in a thread; use as a
    context manager. ``url`` is the root, ``admin_token`` the experimenter's token."""

    def __init__(self, db: Path, admin_token: str = "admin-token-for-tests"):
        from werkzeug.serving import make_server

        from dlmap.experiment.app import LoggingRequestHandler, create_app

        self.admin_token = admin_token
        self.server = make_server(
            "127.0.0.1", 0, None, threaded=True, request_handler=LoggingRequestHandler
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.server.app = create_app(db, admin_token, self.url)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ServedStudy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
