"""What is in force now (grants and pauses), and what changes it: results, pauses, the brake, grants."""
