"""Mail: the parsed ``Email``, receipt rules and the receiver, outbound mail."""
