"""Who is moved by an offer: uplift metrics, learners on logged outcomes, and off-policy values of a policy."""
