# CPU-sized supervised upper bound: supervised_basic_bus_cpu_quick.py trained on basic-train + extended-train
# crops, all labels revealed.
_base_ = ['./supervised_basic_bus_cpu_quick.py']
train_dataloader = dict(
    dataset=dict(
        _delete_=True, type='ConcatDataset',
        datasets=[
            dict(type='BUSCropDataset', data_root={{_base_.data_root}}, ann_file='basic_train.json',
                 pipeline={{_base_.train_pipeline}}),
            dict(type='BUSCropDataset', data_root={{_base_.data_root}}, ann_file='extended_train.json',
                 use_hidden_labels=True, pipeline={{_base_.train_pipeline}}),
        ]))
