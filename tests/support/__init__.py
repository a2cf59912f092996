"""What the test suite shares: a real sshd, process helpers, FIFOs and virtual clocks.

Nothing here ships with corral: the test sshd (:mod:`.sshd`) creates system
users and a sudoers rule, which does not belong in a user's install.
"""
