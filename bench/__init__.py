"""Full-size benchmarks; each writes JSON with machine info under bench/results/."""
