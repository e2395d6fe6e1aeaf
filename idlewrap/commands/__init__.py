"""Commands an admin runs by hand; no session ever imports them."""
