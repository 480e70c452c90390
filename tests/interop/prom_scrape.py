"""Scrapes a p11kms metrics URL and parses it with the Prometheus project's own Python
client (prometheus_client.parser), so that the exposition is checked by a parser p11kms
did not write. Prints one JSON object: the response's Content-Type and every sample as
{"family", "type", "name", "labels", "value"}."""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as resp:
        content_type = resp.headers.get("Content-Type", "")
        text = resp.read().decode("utf-8")
    samples = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.append(
                {
                    "family": family.name,
                    "type": family.type,
                    "name": s.name,
                    "labels": s.labels,
                    "value": s.value,
                }
            )
    json.dump({"content_type": content_type, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
