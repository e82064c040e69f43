"""From records to readers: leaderboard, paper tables, plots and the HTML report."""
