"""``python -m vit_edge.artifact > docs/manifest.schema.json``: print the manifest's JSON Schema."""

import json

from vit_edge.artifact.manifest import schema

print(json.dumps(schema(), indent=2))
