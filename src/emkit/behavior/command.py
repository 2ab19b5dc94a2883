"""The ``emkit segment`` command: pose-tracker files (or tables) to states, tables, plots and a report."""

from __future__ import annotations

import json


def add_parser(sub):
    """Add ``segment`` to the subparsers of the ``emkit`` command line."""
    from .recordings import SOURCE_SOFTWARE
    from .segment import MODELS

    p = sub.add_parser("segment", help="behaviour states from pose-tracker files (or tables), per recording")
    p.add_argument("files", nargs="+", metavar="FILE", help="pose files (with --source-software) or tables")
    p.add_argument("--source-software", metavar="NAME",
                   help=f"pose files' tracker: {', '.join(SOURCE_SOFTWARE)} (read with movement); "
                        "without it the files are tables of features")
    p.add_argument("--fps", type=float, default=None, help="frames per second (times and durations in seconds)")
    p.add_argument("-k", "--n-components", type=int, default=None, help="number of states")
    p.add_argument("--select", metavar="RANGE", help="choose the number of states among e.g. 2-12")
    p.add_argument("--criterion", choices=("bic", "aic", "icl", "heldout"), default="bic",
                   help="criterion for --select (default bic)")
    p.add_argument("--model", choices=MODELS, default="arhmm", help="default arhmm")
    p.add_argument("--order", type=int, default=1, help="arhmm: autoregressive order (default 1)")
    p.add_argument("--kappa", type=float, default=0.0, help="sticky self-transition prior weight (longer bouts)")
    p.add_argument("--pca", type=float, default=None,
                   help="keep this many principal components of the pose (>= 1) or this fraction of variance (< 1)")
    p.add_argument("--anchor", metavar="KEYPOINT", help="keypoint at the origin (default: the heading's first)")
    p.add_argument("--heading", metavar="BACK,FRONT",
                   help="two keypoints whose difference points forward (default: last and first keypoint)")
    p.add_argument("--no-kinematics", action="store_true", help="leave out speed and angular velocity")
    p.add_argument("--min-confidence", type=float, default=None, metavar="P",
                   help="keypoints tracked with a lower confidence become missing (e.g. 0.6 for DeepLabCut)")
    p.add_argument("--columns", metavar="x,y,z", help="tables: feature columns")
    p.add_argument("--sequence-column", metavar="NAME", help="tables: column naming the recording of each row")
    p.add_argument("--key", metavar="NAME", help="tables: HDF5 dataset")
    p.add_argument("--n-init", type=int, default=1, help="restarts; the best is kept")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("-o", "--output", default="emkit-out", help="output directory (default emkit-out)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)
    return p


def run(args):
    """Run ``emkit segment``; prints a summary, writes the outputs, returns the exit status."""
    heading = None
    if args.heading:
        heading = [h.strip() for h in args.heading.split(",")]
        if len(heading) != 2 or not all(heading):
            raise ValueError(f"--heading must be two keypoints BACK,FRONT; got {args.heading!r}")
    pca = args.pca
    if pca is not None and pca >= 1:
        if pca != int(pca):
            raise ValueError(f"--pca must be a whole number of components (>= 1) or a fraction in (0, 1); got {pca}")
        pca = int(pca)
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    with _quiet_movement():
        seg = _segment(args, heading, pca, columns)
    files = seg.write(args.output)
    _report(args, seg, files)
    return 0


class _quiet_movement:
    """movement logs its errors to the console too; the command reports them in one line."""

    def __enter__(self):
        try:
            from loguru import logger
        except ImportError:
            self.logger = None
        else:
            self.logger = logger
            logger.disable("movement")

    def __exit__(self, *exc):
        if self.logger is not None:
            self.logger.enable("movement")


def _segment(args, heading, pca, columns):
    from .segment import segment

    return segment(args.files, source_software=args.source_software, fps=args.fps, n_states=args.n_components,
                  model=args.model, kappa=args.kappa, order=args.order, pca=pca, select=args.select,
                  criterion=args.criterion, anchor=args.anchor, heading=heading, kinematics=not args.no_kinematics,
                  min_confidence=args.min_confidence,
                  columns=columns, sequence_column=args.sequence_column, key=args.key, n_init=args.n_init,
                  max_iter=args.max_iter, random_state=args.seed)


def _report(args, seg, files):
    summary = seg.summary()
    overall = seg.overall()
    unit = "s" if seg.fps else "frames"
    n_frames = int(seg.lengths.sum())
    lines = [f"emkit segment: {len(seg.recordings)} recordings ({', '.join(seg.recordings)}), {n_frames} frames"
             + (f" at {seg.fps:g} fps" if seg.fps else ""),
             f"  features ({len(seg.feature_names)}): {', '.join(seg.feature_names)}"]
    if seg.features is not None:
        f = seg.features
        lines.append(f"  egocentric: anchor {f.anchor}, heading {f.heading[0]} -> {f.heading[1]}"
                     + (f"; PCA to {f.pca_.n_components_} components" if f.pca_ is not None else ""))
    lines += [f"  note: {n}" for n in seg.notes]
    lines.append(f"  {type(seg.model).__name__} with K={seg.n_states}"
                 + (f" chosen by {args.criterion} among {args.select}" if seg.selection is not None else "")
                 + f"; {seg.seconds:.1f}s")
    lines.append(f"  state  usage  bouts  mean dwell ({unit}, all recordings)")
    for k, row in overall.iterrows():
        lines.append(f"  {k:>5d}  {row['usage']:.3f}  {int(row['bouts']):>5d}  {row['dwell_mean_s']:.3g}")
    lines.append("  wrote " + ", ".join(files.values()))
    if args.json:
        info = {"recordings": list(seg.recordings), "frames": seg.lengths.tolist(), "fps": seg.fps,
                "features": list(seg.feature_names), "model": type(seg.model).__name__,
                "n_components": seg.n_states, "seconds": seg.seconds, "notes": seg.notes,
                "summary": json.loads(summary.to_json(orient="records")), "files": files}
        print(json.dumps(info, indent=2))
    else:
        print("\n".join(lines))
