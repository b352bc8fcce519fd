"""The Stratum proxy: miners in, upstream pools or coin daemons out, every share validated."""
