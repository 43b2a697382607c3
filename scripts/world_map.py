"""Build the dashboard's world map (airq_app/web/static/world.svg) from a world-atlas land TopoJSON file.

    npm pack world-atlas@2 && tar xzf world-atlas-2.0.2.tgz
    python scripts/world_map.py package/land-110m.json > airq_app/web/static/world.svg

Equirectangular: x = longitude + 180, y = 90 - latitude, so the page places a location without a map library.
"""

from __future__ import annotations

import json
import sys


def decode_arcs(topology: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:  # quantized and delta-encoded
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring_points(ring: list[int], arcs: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for index in ring:
        arc = arcs[index] if index >= 0 else arcs[~index][::-1]
        points.extend(arc[1:] if points else arc)  # consecutive arcs share their joining point
    return points


def svg_path(topology: dict) -> str:
    arcs = decode_arcs(topology)
    parts = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            for ring in polygon:
                pts = ring_points(ring, arcs)
                parts.append("M" + "L".join(f"{lon + 180:.1f} {90 - lat:.1f}" for lon, lat in pts) + "Z")
    return "".join(parts)


def main() -> None:
    topology = json.load(open(sys.argv[1], encoding="utf-8"))
    print(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 360 180">'
        "<!-- Land outlines: Natural Earth 1:110m (public domain) via world-atlas 2.0.2 (ISC). -->"
        f'<path id="land" d="{svg_path(topology)}"/></svg>'
    )


if __name__ == "__main__":
    main()
