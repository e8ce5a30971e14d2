"""The method: data, scoring, training, sweep, prescreen, statistics, claims, decomposition, figures."""
