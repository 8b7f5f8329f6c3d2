"""``python -m algorithms.networks [--num-classes K]``: print a table of every
registered network, the input shape used and its parameter count."""
from __future__ import annotations

import argparse

from . import NETWORKS, build_network, count_parameters, list_networks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m algorithms.networks",
                                     description="List the registered networks.")
    parser.add_argument("--num-classes", type=int, default=10)
    args = parser.parse_args(argv)
    rows = []
    for name in list_networks():
        spec = NETWORKS[name]
        model = build_network(name, spec.default_input_shape, args.num_classes)
        rows.append((name, str(spec.default_input_shape), f"{count_parameters(model):,}",
                     spec.description))
    header = ("network", "input shape", f"params ({args.num_classes} classes)", "description")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    fmt = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}  {{}}"
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths), "-" * 11))
    for r in rows:
        print(fmt.format(*r))


if __name__ == "__main__":
    main()
