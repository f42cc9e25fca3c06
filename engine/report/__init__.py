"""`mtpa-engine report`: the persona effect with paired-bootstrap uncertainty by subgroup, trait ablation,
pass@k and agreement, written as CSV, Parquet, Markdown and one self-contained HTML file."""
