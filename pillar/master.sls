# The salt master: where the checkout, the private pillar root and the wheelhouse live.
master:
  checkout: /srv/ccmirror
  private_pillar: /srv/ccmirror-private
  dist_root: /srv/ccmirror-dist
