//! Runs scenarios against a target. Owned by the lead; uses script, net, proto, checks, report.
