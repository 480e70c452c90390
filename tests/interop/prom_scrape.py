"""Scrapes a p11kms metrics URL and parses it with the Prometheus project's own Python
client (prometheus_client.parser), so that the exposition is checked by a parser p11kms
did not write. Usage: prom_scrape.py URL [CA_FILE]. Prints one JSON object: the response's Content-Type and every sample as
{"family", "type", "name", "labels", "value"}."""

import json
import ssl
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    url = sys.argv[1]
    # An https URL is checked against the CA file given after the URL.
    context = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
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
