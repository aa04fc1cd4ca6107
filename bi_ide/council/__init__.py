"""Council: members, grounded deliberation, reasoning backends, calibrated decisions."""
