"""One OpenMined PSI exchange (``openmined-psi``: ECDH, the server's set sent as a Golomb
compressed set), run in the benchmark's own virtualenv, not the project's.

``openmined-psi`` pins a protobuf the project cannot share, so :mod:`bench.openmined`
installs it in ``.bench-venvs/openmined`` and runs this file there as a script::

    .bench-venvs/openmined/bin/python bench/openmined_driver.py < job.json

It imports nothing from the project. The job on standard input is one JSON object::

    {"server_items": ["..."], "client_items": ["..."], "fpr": 1e-12,
     "reveal_intersection": true, "data_structure": "GCS"}

(``data_structure`` is optional: ``GCS`` by default, ``RAW`` or ``BLOOM_FILTER``). Both
parties run in this one process, one after the other; every message crosses between them
as serialized bytes, and the bytes counted are those. Timed phases (seconds,
``time.perf_counter``):

- ``server_setup_seconds`` (offline): a server key, the setup message built from the
  server's set and serialized;
- ``client_setup_load_seconds`` (offline): the client parses the setup message;
- ``client_request_seconds``: a client key, the request (the client's items blinded),
  serialized;
- ``server_process_seconds``: the server parses the request, blinds it again, serializes
  the response;
- ``client_intersection_seconds``: the client parses the response and computes the
  intersection (or only its size);
- ``online_seconds``: request + process + intersection.

Standard output gets one JSON object with those figures, ``setup_bytes``,
``request_bytes``, ``response_bytes``, ``intersection_size`` and, when
``reveal_intersection`` is true, ``intersection`` (the client's items found, in the
client's order). A bad job exits with code 2 and a message on standard error.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

DATA_STRUCTURES = ("GCS", "RAW", "BLOOM_FILTER")


class JobError(ValueError):
    """The job on standard input is not one this driver can run."""


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    server_items: list[str]
    client_items: list[str]
    fpr: float
    reveal_intersection: bool
    data_structure: str


def _items(document: dict[str, Any], key: str) -> list[str]:
    items = document.get(key)
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise JobError(f"{key!r} must be a list of strings")
    return items


def parse_job(document: object) -> Job:
    if not isinstance(document, dict):
        raise JobError("the job must be a JSON object")
    fpr = document.get("fpr", 1e-12)
    if isinstance(fpr, bool) or not isinstance(fpr, int | float) or not 0 < fpr < 1:
        raise JobError(f"'fpr' must be a number between 0 and 1, not {fpr!r}")
    reveal = document.get("reveal_intersection", True)
    if not isinstance(reveal, bool):
        raise JobError(f"'reveal_intersection' must be true or false, not {reveal!r}")
    structure = document.get("data_structure", "GCS")
    if structure not in DATA_STRUCTURES:
        raise JobError(f"'data_structure' must be one of {', '.join(DATA_STRUCTURES)}")
    return Job(
        server_items=_items(document, "server_items"),
        client_items=_items(document, "client_items"),
        fpr=float(fpr),
        reveal_intersection=reveal,
        data_structure=structure,
    )


def run(job: Job) -> dict[str, Any]:
    """Both parties of one exchange, timed phase by phase (see the module's docstring)."""
    import private_set_intersection.python as psi  # type: ignore[import-not-found]

    reveal = job.reveal_intersection
    clock = time.perf_counter

    start = clock()
    server = psi.server.CreateWithNewKey(reveal)
    setup = server.CreateSetupMessage(
        job.fpr, len(job.client_items), job.server_items, psi.DataStructure[job.data_structure]
    )
    setup_bytes: bytes = setup.SerializeToString()
    server_setup = clock() - start

    start = clock()
    client_setup = psi.ServerSetup()
    client_setup.ParseFromString(setup_bytes)
    client_setup_load = clock() - start

    start = clock()
    client = psi.client.CreateWithNewKey(reveal)
    request_bytes: bytes = client.CreateRequest(job.client_items).SerializeToString()
    client_request = clock() - start

    start = clock()
    request = psi.Request()
    request.ParseFromString(request_bytes)
    response_bytes: bytes = server.ProcessRequest(request).SerializeToString()
    server_process = clock() - start

    start = clock()
    response = psi.Response()
    response.ParseFromString(response_bytes)
    if reveal:
        indices = sorted(int(index) for index in client.GetIntersection(client_setup, response))
        size = len(indices)
    else:
        size = int(client.GetIntersectionSize(client_setup, response))
    client_intersection = clock() - start

    result: dict[str, Any] = {
        "library_version": str(psi.__version__),
        "data_structure": job.data_structure,
        "fpr": job.fpr,
        "server_items": len(job.server_items),
        "client_items": len(job.client_items),
        "server_setup_seconds": server_setup,
        "client_setup_load_seconds": client_setup_load,
        "client_request_seconds": client_request,
        "server_process_seconds": server_process,
        "client_intersection_seconds": client_intersection,
        "online_seconds": client_request + server_process + client_intersection,
        "setup_bytes": len(setup_bytes),
        "request_bytes": len(request_bytes),
        "response_bytes": len(response_bytes),
        "intersection_size": size,
    }
    if reveal:
        result["intersection"] = [job.client_items[index] for index in indices]
    return result


def main() -> int:
    try:
        job = parse_job(json.load(sys.stdin))
    except (json.JSONDecodeError, UnicodeDecodeError, JobError) as error:
        print(f"openmined_driver: bad job on standard input: {error}", file=sys.stderr)
        return 2
    json.dump(run(job), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
