"""Search harvesting (`harvester seed`, `harvester work`): the Flickr API client, the task
tree and how a task is walked, and the photos and licenses it stores."""
