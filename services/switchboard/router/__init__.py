"""The router: decides for every conversation which skill group and which agent own it, or that it waits."""
